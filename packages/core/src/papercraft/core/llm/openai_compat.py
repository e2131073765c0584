"""``OpenAICompatibleModel``: the ``LanguageModel`` protocol over an OpenAI-compatible HTTP API.

Works with any server that speaks the OpenAI completions / chat-completions protocol (vLLM,
llama.cpp's server, OpenAI itself):

- ``generate`` posts to ``/v1/completions`` (``endpoint="completions"``) or wraps each prompt as
  one user message for ``/v1/chat/completions`` (``endpoint="chat"``);
- ``chat`` posts to ``/v1/chat/completions``; message contents pass through unchanged, so image
  parts (``{"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}``) reach
  vision models;
- ``loglikelihood`` follows lm-evaluation-harness's ``OpenaiCompletionsLM``: it posts
  ``prompt = context + continuation`` to ``/v1/completions`` with ``echo=True``,
  ``max_tokens=0`` (``1`` when the server refuses 0) and ``logprobs=1``, takes the echoed prompt
  tokens whose ``text_offset`` lies in ``[len(context), len(prompt))``, sums their
  ``token_logprobs``, and calls the continuation greedy when every such token is the top entry of
  its ``top_logprobs``. The tokens are the server's joint tokenization of the prompt, so a token
  that straddles the context/continuation boundary counts as context.

Every request has a timeout. Answers 408, 429 and 5xx, connection errors and timeouts are retried up to
``max_retries`` times with exponential backoff and jitter (``Retry-After`` is honoured); other
4xx answers fail at once. Requests run on a pool of ``max_concurrency`` threads; results come back
in input order. ``httpx`` is an optional dependency (``pip install 'papercraft-core[openai]'``).
"""

from __future__ import annotations

import email.utils
import logging
import math
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import urlsplit

from tqdm.auto import tqdm

from papercraft.core.llm.base import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    LanguageModelError,
    LoglikelihoodResult,
    LogprobsNotSupportedError,
    Message,
    ResponseFormatError,
    cut_at_stop,
    validate_conversations,
    validate_generate_args,
    validate_loglikelihood_args,
)

if TYPE_CHECKING:
    import httpx

__all__ = ["OpenAICompatibleModel"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
_Item = TypeVar("_Item")
_RETRY_STATUS = frozenset({408, 429})  # plus every 5xx


def _import_httpx() -> Any:
    try:
        import httpx
    except ImportError as err:  # pragma: no cover - httpx is installed in the test environment
        raise ImportError(
            "OpenAICompatibleModel needs httpx; install it with "
            "`pip install 'papercraft-core[openai]'` (or `pip install httpx`)"
        ) from err
    return httpx


def _normalize_base_url(base_url: str) -> str:
    if not isinstance(base_url, str):
        raise TypeError(f"base_url must be a str, got {type(base_url).__name__}")
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(
            f"base_url must be an http(s) URL such as 'http://localhost:8000/v1', got {base_url!r}"
        )
    url = base_url.rstrip("/")
    if parts.path.strip("/") == "":
        url += "/v1"
    return url


def _server_message(response: httpx.Response) -> str:
    """The error message in a server's answer (OpenAI ``{"error": {"message": ...}}`` or text)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, Mapping):
        error = body.get("error")
        if isinstance(error, Mapping) and isinstance(error.get("message"), str):
            return str(error["message"])
        for key in ("error", "message", "detail"):
            if isinstance(body.get(key), str):
                return str(body[key])
    text = response.text.strip()
    return (text[:500] + "...") if len(text) > 500 else (text or "(empty body)")


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds asked for by a ``Retry-After`` header (delta-seconds or HTTP date), if any."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _field(body: Any, path: Sequence[str | int], url: str) -> Any:
    """``body[path[0]][path[1]]...`` or a ResponseFormatError naming the missing field."""
    value = body
    for depth, key in enumerate(path):
        ok = (
            isinstance(key, int) and isinstance(value, list) and -len(value) <= key < len(value)
        ) or (isinstance(key, str) and isinstance(value, Mapping) and key in value)
        if not ok:
            where = "".join(f"[{k!r}]" for k in path[: depth + 1])
            raise ResponseFormatError(
                f"unexpected response from {url}: no field {where} (body starts: {str(body)[:300]!r})"
            )
        value = value[key]
    return value


class OpenAICompatibleModel:
    """A model served behind an OpenAI-compatible HTTP API.

    Args:
        base_url (str): the API root, e.g. ``"http://localhost:8000/v1"`` or
            ``"https://api.openai.com/v1"``; a bare ``"http://host:port"`` gets ``/v1``
            appended.
        model (str): the model name sent with each request.
        endpoint (Literal["completions", "chat"]): what ``generate`` uses. Default: "completions"
        api_key (str | None): the key, sent as ``Authorization: Bearer <key>``. None reads the
            environment variable ``api_key_env``; no header is sent when neither is set (local
            servers need none). Default: None
        api_key_env (str): name of the environment variable holding the key.
            Default: "OPENAI_API_KEY"
        timeout (float): seconds each request may take to connect, send, and between received
            bytes. Default: 60.0
        max_retries (int): retries after the first attempt on 408/429/5xx answers, connection errors
            and timeouts. Default: 5
        backoff_base (float): the first retry waits about this many seconds; each next one twice
            as long (times a random factor in [0.5, 1]). Default: 0.5
        max_backoff (float): upper bound on any single wait, ``Retry-After`` included.
            Default: 30.0
        max_concurrency (int): requests in flight at once. Default: 4
        seed (int | None): sent as the ``seed`` field (servers that support it sample
            reproducibly). Default: None
        extra_body (Mapping[str, Any] | None): further JSON fields merged into every request
            (e.g. ``{"top_p": 0.9}``). Default: None
        show_progress (bool): show a tqdm bar when a call sends more than ``max_concurrency``
            requests. Default: True

    Raises:
        TypeError / ValueError: when an argument is malformed.
        ImportError: when httpx is not installed.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        endpoint: Literal["completions", "chat"] = "completions",
        api_key: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 60.0,
        max_retries: int = 5,
        backoff_base: float = 0.5,
        max_backoff: float = 30.0,
        max_concurrency: int = 4,
        seed: int | None = None,
        extra_body: Mapping[str, Any] | None = None,
        show_progress: bool = True,
    ) -> None:
        self.base_url = _normalize_base_url(base_url)
        if not isinstance(model, str) or not model:
            raise ValueError(f"model must be a non-empty str, got {model!r}")
        if endpoint not in ("completions", "chat"):
            raise ValueError(f"endpoint must be 'completions' or 'chat', got {endpoint!r}")
        for name, value in (
            ("timeout", timeout),
            ("backoff_base", backoff_base),
            ("max_backoff", max_backoff),
        ):
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
            ):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        if backoff_base < 0 or max_backoff < 0:
            raise ValueError(
                f"backoff_base and max_backoff must be >= 0, got {backoff_base} and {max_backoff}"
            )
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be an int >= 0, got {max_retries!r}")
        if (
            isinstance(max_concurrency, bool)
            or not isinstance(max_concurrency, int)
            or max_concurrency < 1
        ):
            raise ValueError(f"max_concurrency must be a positive int, got {max_concurrency!r}")
        if not isinstance(api_key_env, str) or not api_key_env:
            raise ValueError(f"api_key_env must be a non-empty str, got {api_key_env!r}")
        httpx = _import_httpx()
        self.model = model
        self.endpoint = endpoint
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.backoff_base = float(backoff_base)
        self.max_backoff = float(max_backoff)
        self.max_concurrency = max_concurrency
        self.seed = seed
        self.extra_body = dict(extra_body or {})
        self.show_progress = show_progress
        key = api_key if api_key is not None else os.environ.get(api_key_env)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._jitter = random.Random()
        # Sent max_tokens for echo scoring: 0 first, 1 once a server refused 0.
        self._echo_max_tokens = 0
        self._client = httpx.Client(
            timeout=httpx.Timeout(self.timeout),
            limits=httpx.Limits(
                max_connections=max_concurrency, max_keepalive_connections=max_concurrency
            ),
            headers=headers,
        )

    # ---------------------------------------------------------------- lifecycle

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    def __enter__(self) -> OpenAICompatibleModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ transport

    def _backoff(self, attempt: int) -> float:
        return min(self.max_backoff, self.backoff_base * 2.0**attempt) * self._jitter.uniform(
            0.5, 1.0
        )

    def post(self, path: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """POST a JSON payload to ``{base_url}/{path}`` with retries; return the JSON answer.

        Args:
            path (str): e.g. ``"completions"`` or ``"chat/completions"``.
            payload (Mapping[str, Any]): the request body.

        Returns:
            dict[str, Any]: the decoded JSON object.

        Raises:
            APIStatusError: on a non-retryable error status, or a retryable one after retries.
            APITimeoutError: when the last attempt timed out.
            APIConnectionError: when the last attempt could not connect or lost the connection.
            ResponseFormatError: when the answer is not a JSON object.
        """
        httpx = _import_httpx()
        url = f"{self.base_url}/{path.lstrip('/')}"
        attempts = self.max_retries + 1
        failure: LanguageModelError
        for attempt in range(attempts):
            wait: float | None = None
            try:
                response = self._client.post(url, json=dict(payload))
            except httpx.TimeoutException as err:
                failure = APITimeoutError(
                    url,
                    f"timed out after {self.timeout:g} s ({type(err).__name__})",
                    attempts=attempt + 1,
                )
            except httpx.TransportError as err:
                failure = APIConnectionError(
                    url, f"{type(err).__name__}: {err}", attempts=attempt + 1
                )
            else:
                status = response.status_code
                if status < 400:
                    return self._decode(response, url)
                failure = APIStatusError(
                    url, status, _server_message(response), attempts=attempt + 1
                )
                if status < 500 and status not in _RETRY_STATUS:
                    raise failure
                wait = _retry_after(response)
            if attempt + 1 == attempts:
                break
            delay = min(wait, self.max_backoff) if wait is not None else self._backoff(attempt)
            logger.warning(
                "%s; retry %d/%d in %.2f s%s",
                failure,
                attempt + 1,
                self.max_retries,
                delay,
                " (Retry-After)" if wait is not None else "",
            )
            time.sleep(delay)
        raise failure

    @staticmethod
    def _decode(response: httpx.Response, url: str) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError as err:
            raise ResponseFormatError(
                f"the answer from {url} (HTTP {response.status_code}) is not valid JSON: {err}; "
                f"body starts: {response.text[:300]!r}"
            ) from err
        if not isinstance(body, dict):
            raise ResponseFormatError(
                f"the answer from {url} is JSON but not an object: {str(body)[:300]!r}"
            )
        return body

    def _run_all(self, items: Sequence[_Item], task: Callable[[_Item], _T], desc: str) -> list[_T]:
        """Run ``task`` over ``items`` on at most ``max_concurrency`` threads, in input order."""
        if not items:
            return []
        if len(items) == 1:
            return [task(items[0])]
        bar = (
            tqdm(total=len(items), desc=desc, unit="req", leave=False)
            if self.show_progress and len(items) > self.max_concurrency
            else None
        )
        pool = ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(items)))
        try:
            futures: list[Future[_T]] = [pool.submit(task, item) for item in items]
            if bar is not None:
                for f in futures:
                    f.add_done_callback(lambda _f: bar.update(1))
            results = [f.result() for f in futures]
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        finally:
            if bar is not None:
                bar.close()
        pool.shutdown(wait=True)
        return results

    # ---------------------------------------------------------------- protocol

    def _sampling_fields(
        self, max_new_tokens: int, temperature: float, stop: Sequence[str] | None
    ) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "model": self.model,
            "max_tokens": max_new_tokens,
            "temperature": float(temperature),
        }
        if stop:
            fields["stop"] = list(stop)
        if self.seed is not None:
            fields["seed"] = self.seed
        fields.update(self.extra_body)
        return fields

    def _complete(self, prompt: str, fields: Mapping[str, Any]) -> str:
        url = f"{self.base_url}/completions"
        body = self.post("completions", {**fields, "prompt": prompt})
        text = _field(body, ["choices", 0, "text"], url)
        if not isinstance(text, str):
            raise ResponseFormatError(
                f"unexpected response from {url}: choices[0].text is not a str"
            )
        return text

    def _chat_once(self, messages: list[Message], fields: Mapping[str, Any]) -> str:
        url = f"{self.base_url}/chat/completions"
        body = self.post("chat/completions", {**fields, "messages": messages})
        message = _field(body, ["choices", 0, "message"], url)
        if not isinstance(message, Mapping):
            raise ResponseFormatError(
                f"unexpected response from {url}: choices[0].message is not an object"
            )
        content = message.get("content")
        if content is None:  # e.g. a refusal or a tool call: no text
            return ""
        if not isinstance(content, str):
            raise ResponseFormatError(
                f"unexpected response from {url}: choices[0].message.content is not a str"
            )
        return content

    def generate(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        stop: Sequence[str] | None = None,
    ) -> list[str]:
        """Continue each prompt through the configured ``endpoint``.

        Args:
            prompts (Sequence[str]): plain-text prompts (sent as one user message each when
                ``endpoint="chat"``).
            max_new_tokens (int): ``max_tokens`` of each request (0 gives "" without a request).
            temperature (float): 0 for greedy decoding, > 0 for sampling. Default: 0.0
            stop (Sequence[str] | None): sent to the server and also applied to the answer.
                Default: None

        Returns:
            list[str]: one completion per prompt, in input order.

        Raises:
            TypeError / ValueError: on bad arguments (before any request).
            LanguageModelError: when a request fails (see ``post``).
        """
        validate_generate_args(prompts, max_new_tokens, temperature, stop)
        if max_new_tokens == 0:
            return [""] * len(prompts)
        fields = self._sampling_fields(max_new_tokens, temperature, stop)
        if self.endpoint == "chat":
            texts = self._run_all(
                list(prompts),
                lambda p: self._chat_once([{"role": "user", "content": p}], fields),
                "generate",
            )
        else:
            texts = self._run_all(list(prompts), lambda p: self._complete(p, fields), "generate")
        return [cut_at_stop(t, stop) for t in texts]

    def chat(
        self,
        conversations: Sequence[list[Message]],
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        stop: Sequence[str] | None = None,
    ) -> list[str]:
        """Ask ``/chat/completions`` for the next assistant message of each conversation.

        Args:
            conversations (Sequence[list[Message]]): OpenAI-style message lists (text and
                ``image_url`` parts pass through unchanged).
            max_new_tokens (int): ``max_tokens`` of each request (0 gives "" without a request).
            temperature (float): 0 for greedy decoding, > 0 for sampling. Default: 0.0
            stop (Sequence[str] | None): stop strings. Default: None

        Returns:
            list[str]: one reply per conversation, in input order.

        Raises:
            TypeError / ValueError: on bad arguments (before any request).
            LanguageModelError: when a request fails (see ``post``).
        """
        validate_conversations(conversations, max_new_tokens, temperature, stop)
        if max_new_tokens == 0:
            return [""] * len(conversations)
        fields = self._sampling_fields(max_new_tokens, temperature, stop)
        texts = self._run_all(
            list(conversations), lambda conv: self._chat_once(conv, fields), "chat"
        )
        return [cut_at_stop(t, stop) for t in texts]

    def loglikelihood(
        self, contexts: Sequence[str], continuations: Sequence[str]
    ) -> list[LoglikelihoodResult]:
        """Score each continuation from the server's echoed prompt log-probabilities.

        Args:
            contexts (Sequence[str]): conditioning texts.
            continuations (Sequence[str]): texts to score, one per context, non-empty.

        Returns:
            list[LoglikelihoodResult]: one result per pair, in input order.

        Raises:
            TypeError / ValueError: on bad arguments (before any request).
            LogprobsNotSupportedError: when the server cannot echo prompt log-probabilities.
            ResponseFormatError: when the logprobs in the answer are malformed.
            LanguageModelError: when a request fails (see ``post``).
        """
        validate_loglikelihood_args(contexts, continuations)
        pairs = list(zip(contexts, continuations, strict=True))
        return self._run_all(pairs, lambda pair: self._score(*pair), "loglikelihood")

    def _echo_request(self, prompt: str) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self.model,
            "prompt": prompt,
            "echo": True,
            "logprobs": 1,
            "temperature": 0.0,
            **self.extra_body,
        }
        url = f"{self.base_url}/completions"
        while True:
            max_tokens = self._echo_max_tokens
            try:
                return self.post("completions", {**payload, "max_tokens": max_tokens})
            except APIStatusError as err:
                if err.status not in (400, 422) or max_tokens >= 1:
                    if err.status in (400, 404, 422, 501):
                        raise LogprobsNotSupportedError(
                            f"{url} refused the prompt-logprobs request (echo=True, logprobs=1, "
                            f"max_tokens={max_tokens}): HTTP {err.status}: {err.server_message}"
                        ) from err
                    raise
                self._echo_max_tokens = 1  # some servers require max_tokens >= 1

    def _score(self, context: str, continuation: str) -> LoglikelihoodResult:
        url = f"{self.base_url}/completions"
        prompt = context + continuation
        body = self._echo_request(prompt)
        choice = _field(body, ["choices", 0], url)
        if not isinstance(choice, Mapping):
            raise ResponseFormatError(
                f"unexpected response from {url}: choices[0] is not an object"
            )
        logprobs = choice.get("logprobs")
        if not isinstance(logprobs, Mapping) or logprobs.get("token_logprobs") is None:
            raise LogprobsNotSupportedError(
                f"{url} answered without prompt logprobs (choices[0].logprobs is "
                f"{logprobs!r:.100}); the server must support echo=True with logprobs"
            )
        tokens = _field(logprobs, ["tokens"], url)
        token_logprobs = _field(logprobs, ["token_logprobs"], url)
        offsets = _field(logprobs, ["text_offset"], url)
        top = _field(logprobs, ["top_logprobs"], url)
        lists = (tokens, token_logprobs, offsets, top)
        if not all(isinstance(x, list) for x in lists) or len({len(x) for x in lists}) != 1:
            raise ResponseFormatError(
                f"unexpected response from {url}: logprobs.tokens, token_logprobs, text_offset "
                "and top_logprobs must be lists of the same length"
            )
        total, greedy, count = 0.0, True, 0
        for token, lp, offset, candidates in zip(tokens, token_logprobs, offsets, top, strict=True):
            if not isinstance(offset, int) or offset < len(context):
                continue
            if offset >= len(prompt):  # a generated token (max_tokens=1), not part of the prompt
                break
            if lp is None:
                raise LanguageModelError(
                    f"{url} gave no logprob for continuation token {token!r} at offset {offset} "
                    "(the first token of a prompt has none; use a non-empty context)"
                )
            if (
                not isinstance(lp, (int, float))
                or not isinstance(candidates, Mapping)
                or not candidates
            ):
                raise ResponseFormatError(
                    f"unexpected response from {url}: token {token!r} has logprob {lp!r} and "
                    f"top_logprobs {candidates!r}"
                )
            total += float(lp)
            count += 1
            best = max(candidates, key=lambda k: candidates[k])
            greedy = greedy and best == token
        if count == 0:
            raise LanguageModelError(
                f"{url} returned no tokens at text offsets >= {len(context)} for continuation "
                f"{continuation!r}"
            )
        return LoglikelihoodResult(logprob=total, is_greedy=greedy, num_tokens=count)
