"""The ``LanguageModel`` protocol, its result type, errors and shared argument checks.

The interface follows lm-evaluation-harness (Gao et al., 2023, ``lm_eval.api.model.LM``):

- ``generate`` — free-form continuation of plain-text prompts (lm-eval's ``generate_until``),
  greedy when ``temperature == 0``, cut at the first stop string;
- ``loglikelihood`` — for each (context, continuation) pair the sum of the log-probabilities of
  the continuation tokens given the context, and whether greedy decoding from the context would
  have produced exactly those tokens (lm-eval's ``(logprob, is_greedy)`` pair);
- ``chat`` — generation from chat-formatted input: lists of OpenAI-style message dicts whose
  ``content`` is a string or a list of parts (``{"type": "text", "text": ...}``,
  ``{"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}``).

Backends live in :mod:`papercraft.core.llm.hf` (a local transformers model) and
:mod:`papercraft.core.llm.openai_compat` (any OpenAI-compatible HTTP server). Every backend checks
its arguments with the helpers here before doing any work, so all of them reject bad input with the
same messages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "LanguageModel",
    "LanguageModelError",
    "LoglikelihoodResult",
    "LogprobsNotSupportedError",
    "Message",
    "ResponseFormatError",
    "cut_at_stop",
    "message_text",
    "validate_conversations",
    "validate_generate_args",
    "validate_loglikelihood_args",
]

Message = dict[str, Any]
"""One chat message: ``{"role": str, "content": str | list[part]}`` (OpenAI format)."""


@dataclass(frozen=True)
class LoglikelihoodResult:
    """Score of one continuation given its context.

    Args:
        logprob (float): sum over the continuation tokens of ``log p(token | everything before it)``
            (natural log).
        is_greedy (bool): True when, at every continuation position, the continuation token is the
            model's most likely next token, i.e. greedy decoding from the context reproduces the
            continuation.
        num_tokens (int): how many continuation tokens were scored.
    """

    logprob: float
    is_greedy: bool
    num_tokens: int


@runtime_checkable
class LanguageModel(Protocol):
    """What every language-model backend offers (lm-evaluation-harness style)."""

    def generate(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        stop: Sequence[str] | None = None,
    ) -> list[str]:
        """Continue each prompt.

        Args:
            prompts (Sequence[str]): plain-text prompts.
            max_new_tokens (int): at most this many generated tokens per prompt (0 gives "").
            temperature (float): 0 for greedy decoding, > 0 for sampling. Default: 0.0
            stop (Sequence[str] | None): each output is cut before the first occurrence of any of
                these strings. Default: None

        Returns:
            list[str]: one completion per prompt (without the prompt), in input order.
        """
        ...

    def loglikelihood(
        self, contexts: Sequence[str], continuations: Sequence[str]
    ) -> list[LoglikelihoodResult]:
        """Score each continuation given its context.

        Args:
            contexts (Sequence[str]): conditioning texts.
            continuations (Sequence[str]): texts to score, one per context, non-empty.

        Returns:
            list[LoglikelihoodResult]: one result per pair, in input order.
        """
        ...

    def chat(
        self,
        conversations: Sequence[list[Message]],
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        stop: Sequence[str] | None = None,
    ) -> list[str]:
        """Generate the assistant's next message for each conversation.

        Args:
            conversations (Sequence[list[Message]]): OpenAI-style message lists.
            max_new_tokens (int): at most this many generated tokens per reply.
            temperature (float): 0 for greedy decoding, > 0 for sampling. Default: 0.0
            stop (Sequence[str] | None): stop strings, as in ``generate``. Default: None

        Returns:
            list[str]: one reply per conversation, in input order.
        """
        ...


class LanguageModelError(RuntimeError):
    """Base class of the errors a language-model backend raises at run time."""


class APIStatusError(LanguageModelError):
    """The server answered with an HTTP error status (after any retries).

    Args:
        url (str): the URL that was requested.
        status (int): the HTTP status code of the last answer.
        message (str): the server's error message (or the start of its body).
        attempts (int): how many requests were made. Default: 1
    """

    def __init__(self, url: str, status: int, message: str, *, attempts: int = 1) -> None:
        self.url = url
        self.status = status
        self.server_message = message
        self.attempts = attempts
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        super().__init__(f"POST {url} failed{tries}: HTTP {status}: {message}")


class APIConnectionError(LanguageModelError):
    """The server could not be reached, or the connection broke (after any retries).

    Args:
        url (str): the URL that was requested.
        reason (str): what went wrong.
        attempts (int): how many requests were made. Default: 1
    """

    def __init__(self, url: str, reason: str, *, attempts: int = 1) -> None:
        self.url = url
        self.reason = reason
        self.attempts = attempts
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        super().__init__(f"POST {url} failed{tries}: {reason}")


class APITimeoutError(APIConnectionError):
    """A request ran past its timeout (after any retries)."""


class ResponseFormatError(LanguageModelError):
    """The server's answer is not valid JSON or lacks a field the protocol requires."""


class LogprobsNotSupportedError(LanguageModelError):
    """The server cannot return prompt log-probabilities (``echo=True`` with ``logprobs``)."""


def _check_strings(name: str, values: object) -> Sequence[str]:
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise TypeError(f"{name} must be a sequence of strings, got {type(values).__name__}")
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise TypeError(f"{name}[{i}] must be a str, got {type(value).__name__}")
    return values


def _check_sampling(max_new_tokens: object, temperature: object, stop: object) -> None:
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int):
        raise TypeError(f"max_new_tokens must be an int, got {type(max_new_tokens).__name__}")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise TypeError(f"temperature must be a float, got {type(temperature).__name__}")
    if not temperature >= 0.0 or temperature == float("inf"):
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature}")
    if stop is not None:
        for i, s in enumerate(_check_strings("stop", stop)):
            if s == "":
                raise ValueError(f"stop[{i}] is the empty string; stop strings must be non-empty")


def validate_generate_args(
    prompts: object, max_new_tokens: object, temperature: object, stop: object
) -> None:
    """Check the arguments of ``generate``.

    Args:
        prompts (object): must be a sequence of str (not a single str).
        max_new_tokens (object): must be an int >= 0.
        temperature (object): must be a finite float >= 0.
        stop (object): None or a sequence of non-empty str.

    Raises:
        TypeError: when an argument has the wrong type.
        ValueError: when a value is out of range.
    """
    _check_strings("prompts", prompts)
    _check_sampling(max_new_tokens, temperature, stop)


def validate_loglikelihood_args(contexts: object, continuations: object) -> None:
    """Check the arguments of ``loglikelihood``.

    Args:
        contexts (object): must be a sequence of str.
        continuations (object): must be a sequence of non-empty str, as long as ``contexts``.

    Raises:
        TypeError: when an argument has the wrong type.
        ValueError: when the lengths differ or a continuation is empty.
    """
    ctx = _check_strings("contexts", contexts)
    cont = _check_strings("continuations", continuations)
    if len(ctx) != len(cont):
        raise ValueError(
            f"contexts and continuations must have the same length, got {len(ctx)} and {len(cont)}"
        )
    for i, c in enumerate(cont):
        if c == "":
            raise ValueError(f"continuations[{i}] is empty; there is nothing to score")


def _check_part(where: str, part: object) -> None:
    if not isinstance(part, Mapping):
        raise TypeError(f"{where} must be a dict, got {type(part).__name__}")
    kind = part.get("type")
    if not isinstance(kind, str):
        raise ValueError(f"{where} must have a str 'type' (e.g. 'text', 'image_url'), got {kind!r}")
    if kind == "text" and not isinstance(part.get("text"), str):
        raise ValueError(f"{where} has type 'text' but no str 'text' field")
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, Mapping) else image
        if not isinstance(url, str):
            raise ValueError(
                f"{where} has type 'image_url' but no image_url.url string "
                "(expected {'image_url': {'url': 'https://... or data:image/...;base64,...'}})"
            )


def validate_conversations(
    conversations: object, max_new_tokens: object, temperature: object, stop: object
) -> None:
    """Check the arguments of ``chat``.

    Every conversation must be a non-empty list of message dicts, each with a str ``role`` and a
    ``content`` that is a str or a list of part dicts with a str ``type`` (``text`` parts need a
    str ``text``; ``image_url`` parts need ``image_url.url``).

    Args:
        conversations (object): the conversations to check.
        max_new_tokens (object): must be an int >= 0.
        temperature (object): must be a finite float >= 0.
        stop (object): None or a sequence of non-empty str.

    Raises:
        TypeError: when an argument has the wrong type.
        ValueError: when a conversation or message is malformed.
    """
    if isinstance(conversations, (str, Mapping)) or not isinstance(conversations, Sequence):
        raise TypeError(
            f"conversations must be a sequence of message lists, got {type(conversations).__name__}"
        )
    for i, conv in enumerate(conversations):
        if not isinstance(conv, list) or not conv:
            raise ValueError(f"conversations[{i}] must be a non-empty list of message dicts")
        for j, msg in enumerate(conv):
            where = f"conversations[{i}][{j}]"
            if not isinstance(msg, Mapping):
                raise TypeError(f"{where} must be a dict, got {type(msg).__name__}")
            if not isinstance(msg.get("role"), str):
                raise ValueError(f"{where} must have a str 'role', got {msg.get('role')!r}")
            content = msg.get("content")
            if isinstance(content, str):
                continue
            if not isinstance(content, list):
                raise ValueError(
                    f"{where}['content'] must be a str or a list of parts, "
                    f"got {type(content).__name__}"
                )
            for k, part in enumerate(content):
                _check_part(f"{where}['content'][{k}]", part)
    _check_sampling(max_new_tokens, temperature, stop)


def message_text(message: Mapping[str, Any], *, where: str = "message") -> str:
    """Return the text of a message whose content holds only text.

    List contents are joined with newlines. Used by text-only backends.

    Args:
        message (Mapping[str, Any]): a validated chat message.
        where (str): how to name the message in errors. Default: "message"

    Returns:
        str: the message's text.

    Raises:
        ValueError: when the content holds a non-text part (e.g. an image).
    """
    content = message["content"]
    if isinstance(content, str):
        return content
    texts = []
    for part in content:
        if part["type"] != "text":
            raise ValueError(
                f"{where} holds a {part['type']!r} part, but this backend only takes text"
            )
        texts.append(part["text"])
    return "\n".join(texts)


def cut_at_stop(text: str, stop: Sequence[str] | None) -> str:
    """Cut ``text`` before the earliest occurrence of any stop string.

    Args:
        text (str): generated text.
        stop (Sequence[str] | None): stop strings (non-empty).

    Returns:
        str: the text up to (not including) the first stop string, or all of it.
    """
    if not stop:
        return text
    end = len(text)
    for s in stop:
        idx = text.find(s)
        if 0 <= idx < end:
            end = idx
    return text[:end]
