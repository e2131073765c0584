"""A real OpenAI-compatible HTTP server for tests, backed by a tiny transformers model.

``OpenAITestServer`` serves ``POST /v1/completions`` and ``POST /v1/chat/completions`` from a
stdlib :class:`http.server.ThreadingHTTPServer` bound to ``127.0.0.1`` on a free port, in a
background thread. Generation goes through :class:`papercraft.core.llm.HFLanguageModel`; prompt
log-probabilities (``echo=True`` with ``logprobs``) are computed directly with the model, with
``text_offset`` taken from the fast tokenizer's character offsets, as vLLM does.

Fault modes (attributes of :class:`Faults`, switched on by the tests) imitate what real servers
do: answer slowly or never, fail with 500 a number of times, rate-limit with 429 + Retry-After,
send broken JSON, refuse or silently omit prompt logprobs, or refuse ``max_tokens=0``. The server
records every request (path, headers, JSON body) and the largest number of requests it was
handling at once.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import torch

from papercraft.core.llm import HFLanguageModel

__all__ = ["Faults", "OpenAITestServer", "RecordedRequest"]


@dataclass
class Faults:
    """What the server does wrong (all off by default).

    Args:
        delay (float): seconds to wait before answering each request. Default: 0.0
        hang (bool): never answer (until the server stops). Default: False
        fail_500 (int): answer this many next requests with HTTP 500. Default: 0
        fail_429 (int): answer this many next requests with HTTP 429 + ``Retry-After``.
            Default: 0
        retry_after (str): the ``Retry-After`` header value sent with 429. Default: "1"
        malformed_json (bool): answer 200 with a truncated JSON body. Default: False
        raw_body (bytes | None): answer 200 with exactly these bytes. Default: None
        logprobs (str): ``"ok"``; ``"reject"`` (400 on echo/logprobs); ``"omit"`` (200 with
            ``logprobs: null``); ``"min_tokens_1"`` (400 on ``max_tokens=0``). Default: "ok"
    """

    delay: float = 0.0
    hang: bool = False
    fail_500: int = 0
    fail_429: int = 0
    retry_after: str = "1"
    malformed_json: bool = False
    raw_body: bytes | None = None
    logprobs: Literal["ok", "reject", "omit", "min_tokens_1"] = "ok"


@dataclass
class RecordedRequest:
    """One request the server received."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class _State:
    lm: HFLanguageModel
    model_name: str
    faults: Faults = field(default_factory=Faults)
    requests: list[RecordedRequest] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    model_lock: threading.Lock = field(default_factory=threading.Lock)
    released: threading.Event = field(default_factory=threading.Event)


class _HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _prompt_logprobs(lm: HFLanguageModel, prompt: str, completion: str) -> dict[str, Any]:
    """OpenAI ``logprobs`` object for the echoed prompt (plus the completion's tokens)."""
    tokenizer = lm.tokenizer
    enc = tokenizer(prompt, return_offsets_mapping=True)
    ids: list[int] = list(enc["input_ids"])
    offsets: list[int] = [start for start, _ in enc["offset_mapping"]]
    special = set(tokenizer.all_special_ids)
    # A leading BOS conditions the first real token but is not echoed.
    n_prefix = 0
    while n_prefix < len(ids) and ids[n_prefix] in special:
        n_prefix += 1
    if completion:
        comp = tokenizer(completion, add_special_tokens=False, return_offsets_mapping=True)
        ids += comp["input_ids"]
        offsets += [len(prompt) + start for start, _ in comp["offset_mapping"]]
    with torch.inference_mode():
        logits = lm.model(input_ids=torch.tensor([ids], device=lm.device)).logits[0]
        logp = torch.log_softmax(logits.float(), dim=-1)  # (T, V)
    tokens: list[str] = []
    token_logprobs: list[float | None] = []
    top_logprobs: list[dict[str, float] | None] = []
    text_offset: list[int] = []
    for j in range(n_prefix, len(ids)):
        tokens.append(str(tokenizer.convert_ids_to_tokens(ids[j])))
        text_offset.append(offsets[j])
        if j == 0:
            token_logprobs.append(None)
            top_logprobs.append(None)
            continue
        row = logp[j - 1]
        best = int(row.argmax())
        token_logprobs.append(float(row[ids[j]]))
        top_logprobs.append({str(tokenizer.convert_ids_to_tokens(best)): float(row[best])})
    return {
        "tokens": tokens,
        "token_logprobs": token_logprobs,
        "top_logprobs": top_logprobs,
        "text_offset": text_offset,
    }


def _completions(state: _State, body: dict[str, Any]) -> dict[str, Any]:
    prompt = body.get("prompt")
    if not isinstance(prompt, str):
        raise _HTTPError(400, "prompt must be a string")
    max_tokens = int(body.get("max_tokens", 16))
    echo = bool(body.get("echo", False))
    wants_logprobs = body.get("logprobs") is not None
    mode = state.faults.logprobs
    if mode == "reject" and (echo or wants_logprobs):
        raise _HTTPError(400, "echo and logprobs are not supported by this model")
    if mode == "min_tokens_1" and max_tokens < 1:
        raise _HTTPError(400, "max_tokens must be at least 1")
    with state.model_lock:
        completion = ""
        if max_tokens > 0:
            completion = state.lm.generate(
                [prompt],
                max_new_tokens=max_tokens,
                temperature=float(body.get("temperature", 1.0)),
                stop=body.get("stop"),
            )[0]
        logprobs = None
        if echo and wants_logprobs and mode != "omit":
            logprobs = _prompt_logprobs(state.lm, prompt, completion)
    return {
        "id": "cmpl-test",
        "object": "text_completion",
        "model": state.model_name,
        "choices": [
            {
                "index": 0,
                "text": prompt + completion if echo else completion,
                "logprobs": logprobs,
                "finish_reason": "length",
            }
        ],
    }


def _chat(state: _State, body: dict[str, Any]) -> dict[str, Any]:
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise _HTTPError(400, "messages must be a list")
    with state.model_lock:
        try:
            reply = state.lm.chat(
                [messages],
                max_new_tokens=int(body.get("max_tokens", 16)),
                temperature=float(body.get("temperature", 1.0)),
                stop=body.get("stop"),
            )[0]
        except (TypeError, ValueError) as err:
            raise _HTTPError(400, str(err)) from err
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "model": state.model_name,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply},
                "finish_reason": "stop",
            }
        ],
    }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(payload)

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        body = {"error": {"message": message, "type": "test_error", "code": status}}
        self._send(status, json.dumps(body).encode(), headers)

    def do_POST(self) -> None:
        state = self.server.state
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with state.lock:
            state.in_flight += 1
            state.max_in_flight = max(state.max_in_flight, state.in_flight)
        try:
            self._handle(state, raw)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (e.g. timed out)
        finally:
            with state.lock:
                state.in_flight -= 1

    def _handle(self, state: _State, raw: bytes) -> None:
        try:
            body = json.loads(raw)
        except ValueError:
            self._error(400, "request body is not JSON")
            return
        with state.lock:
            state.requests.append(RecordedRequest(self.path, dict(self.headers.items()), body))
            faults = state.faults
            fail_500 = faults.fail_500 > 0
            fail_429 = not fail_500 and faults.fail_429 > 0
            if fail_500:
                faults.fail_500 -= 1
            elif fail_429:
                faults.fail_429 -= 1
        if faults.hang:
            with state.lock:
                released = state.released
            released.wait(timeout=60.0)
            return
        if faults.delay:
            time.sleep(faults.delay)
        if fail_500:
            self._error(500, "injected internal server error")
            return
        if fail_429:
            self._error(429, "rate limit reached", {"Retry-After": faults.retry_after})
            return
        if faults.malformed_json:
            self._send(200, b'{"choices": [{"text": "trunc')
            return
        if faults.raw_body is not None:
            self._send(200, faults.raw_body)
            return
        routes = {"/v1/completions": _completions, "/v1/chat/completions": _chat}
        route = routes.get(self.path)
        if route is None:
            self._error(404, f"no route {self.path}")
            return
        try:
            answer = route(state, body)
        except _HTTPError as err:
            self._error(err.status, err.message)
            return
        self._send(200, json.dumps(answer).encode())


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: _State


class OpenAITestServer:
    """An OpenAI-compatible server on ``127.0.0.1`` serving ``lm`` (use as a context manager).

    Args:
        lm (HFLanguageModel): the model behind both endpoints.
        model_name (str): the model name echoed in answers. Default: "tiny-llama"
    """

    def __init__(self, lm: HFLanguageModel, *, model_name: str = "tiny-llama") -> None:
        self._state = _State(lm=lm, model_name=model_name)
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.state = self._state
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        """str: e.g. ``http://127.0.0.1:54321/v1``."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    @property
    def faults(self) -> Faults:
        """Faults: the active fault modes (mutate the fields to switch them)."""
        return self._state.faults

    @property
    def requests(self) -> list[RecordedRequest]:
        """list[RecordedRequest]: every request received since the last ``reset``."""
        with self._state.lock:
            return list(self._state.requests)

    @property
    def max_in_flight(self) -> int:
        """int: the most requests handled at once since the last ``reset``."""
        return self._state.max_in_flight

    def reset(self) -> None:
        """Switch all faults off, let hanging requests end, and forget what was recorded."""
        state = self._state
        with state.lock:
            state.faults = Faults()
            state.released.set()
            state.released = threading.Event()
        deadline = time.monotonic() + 10.0
        while state.in_flight and time.monotonic() < deadline:
            time.sleep(0.01)
        with state.lock:
            state.requests.clear()
            state.max_in_flight = 0

    def start(self) -> OpenAITestServer:
        """Start serving in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Release hanging requests, stop serving and close the socket."""
        self._state.released.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10.0)

    def __enter__(self) -> OpenAITestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
