"""A real OpenAI-compatible multimodal judge for tests: an HTTP server that looks at the image.

``JudgeServer`` serves ``POST /v1/chat/completions`` from a stdlib ``ThreadingHTTPServer`` on
127.0.0.1 (a free port, a background thread). For each request it decodes the base64 PNG in the
``image_url`` part, measures how red the image is (mean of R − (G + B) / 2) and answers
"Rationale: … / Score: N" with N in 1..10, or in JSON when the prompt asks for JSON. Faults:
``fail_500`` answers that many next requests with HTTP 500; ``garbled`` answers that many next
requests with text holding no score. ``requests`` counts the requests served.
"""

from __future__ import annotations

import base64
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
from PIL import Image


def redness_score(image: Image.Image) -> int:
    """1..10 from the mean of R − (G + B) / 2 (pure red → 10, no red → 1)."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    red = float((pixels[..., 0] - (pixels[..., 1] + pixels[..., 2]) / 2).mean())
    return round(1 + 9 * min(1.0, max(0.0, red)))


class JudgeServer:
    """Start with ``with JudgeServer() as server:``; ``server.url`` is the ``/v1`` base URL."""

    def __init__(self) -> None:
        self.fail_500 = 0
        self.garbled = 0
        self.requests = 0
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with owner.lock:
                    owner.requests += 1
                    if owner.fail_500 > 0:
                        owner.fail_500 -= 1
                        self._send(500, {"error": {"message": "overloaded"}})
                        return
                    garble = owner.garbled > 0
                    owner.garbled -= int(garble)
                parts = body["messages"][-1]["content"]
                url = next(p["image_url"]["url"] for p in parts if p["type"] == "image_url")
                image = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
                score = redness_score(image)
                text = (
                    "I am not able to rate this."
                    if garble
                    else f"Rationale: The image is {'mostly' if score > 5 else 'barely'} red. "
                    f"Its colour decides the rating.\nScore: {score}"
                )
                self._send(
                    200,
                    {
                        "id": "x",
                        "object": "chat.completion",
                        "model": body["model"],
                        "choices": [
                            {
                                "index": 0,
                                "finish_reason": "stop",
                                "message": {"role": "assistant", "content": text},
                            }
                        ],
                    },
                )

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> JudgeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
