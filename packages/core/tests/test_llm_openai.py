"""Tests of papercraft.core.llm.openai_compat over a real local HTTP server (tests/_openai_server.py).

The server runs the same tiny Llama as a local ``HFLanguageModel``, so answers over HTTP must equal
the local backend's.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from _openai_server import OpenAITestServer

from papercraft.core.llm import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    HFLanguageModel,
    LanguageModel,
    LogprobsNotSupportedError,
    Message,
    OpenAICompatibleModel,
    ResponseFormatError,
    load_language_model,
    parse_model_spec,
)
from papercraft.core.testing import sample_texts, tiny_causal_lm

PROMPTS = ["The quick brown fox", "Hi", "Return the value of the expression", "Python is"]


@pytest.fixture(scope="module")
def hf_lm() -> HFLanguageModel:
    model, tokenizer = tiny_causal_lm(seed=0)
    return HFLanguageModel(model, tokenizer, show_progress=False)


@pytest.fixture(scope="module")
def running_server(hf_lm: HFLanguageModel) -> Iterator[OpenAITestServer]:
    with OpenAITestServer(hf_lm) as server:
        yield server


@pytest.fixture
def server(running_server: OpenAITestServer) -> OpenAITestServer:
    running_server.reset()
    return running_server


def _client(server: OpenAITestServer, **kwargs: Any) -> OpenAICompatibleModel:
    options: dict[str, Any] = {
        "timeout": 10.0,
        "max_retries": 3,
        "backoff_base": 0.01,
        "show_progress": False,
    }
    options.update(kwargs)
    return OpenAICompatibleModel(server.base_url, "tiny-llama", **options)


def _pairs() -> tuple[list[str], list[str]]:
    """(context, continuation) pairs split at a word boundary, so joint and separate
    tokenization agree; the continuation starts with its space."""
    contexts, continuations = [], []
    for i, text in enumerate(sample_texts(5, seed=3, min_words=4, max_words=10)):
        words = text.split(" ")
        cut = 1 + i % (len(words) - 1)
        contexts.append(" ".join(words[:cut]))
        continuations.append(" " + " ".join(words[cut:]))
    return contexts, continuations


def test_completions_generate_matches_local_greedy(
    server: OpenAITestServer, hf_lm: HFLanguageModel
) -> None:
    with _client(server) as client:
        assert isinstance(client, LanguageModel)
        assert client.generate(PROMPTS, max_new_tokens=8) == hf_lm.generate(
            PROMPTS, max_new_tokens=8
        )
        stop = [hf_lm.generate(PROMPTS[:1], max_new_tokens=8)[0][3:5]]
        assert client.generate(PROMPTS, max_new_tokens=8, stop=stop) == hf_lm.generate(
            PROMPTS, max_new_tokens=8, stop=stop
        )
    body = server.requests[-1].body
    assert server.requests[-1].path == "/v1/completions"
    assert body["model"] == "tiny-llama"
    assert (body["max_tokens"], body["temperature"], body["stop"]) == (8, 0.0, stop)


def test_chat_and_chat_endpoint_match_local(
    server: OpenAITestServer, hf_lm: HFLanguageModel
) -> None:
    conversations: list[list[Message]] = [
        [{"role": "user", "content": "Hello there"}],
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "What is Python?"}]},
        ],
    ]
    with _client(server) as client:
        assert client.chat(conversations, max_new_tokens=6) == hf_lm.chat(
            conversations, max_new_tokens=6
        )
        assert server.requests[-1].body["messages"] in conversations
    with _client(server, endpoint="chat") as client:
        expected = hf_lm.chat([[{"role": "user", "content": p}] for p in PROMPTS], max_new_tokens=6)
        assert client.generate(PROMPTS, max_new_tokens=6) == expected
    assert {r.path for r in server.requests} == {"/v1/chat/completions"}


def test_image_parts_reach_the_server_unchanged(server: OpenAITestServer) -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    conversation = [{"role": "user", "content": [{"type": "text", "text": "What?"}, image]}]
    with _client(server) as client, pytest.raises(APIStatusError) as info:
        client.chat([conversation], max_new_tokens=4)
    # The text-only test model refuses images; the error carries the server's message.
    assert info.value.status == 400
    assert "only takes text" in str(info.value)
    assert server.base_url in str(info.value)
    assert server.requests[0].body["messages"] == conversation
    assert len(server.requests) == 1  # 4xx answers are not retried


def test_loglikelihood_matches_local(server: OpenAITestServer, hf_lm: HFLanguageModel) -> None:
    contexts, continuations = _pairs()
    # Add the model's own greedy continuation so the is_greedy=True path is exercised too.
    greedy_context = "Return the value of"
    greedy = hf_lm.generate([greedy_context], max_new_tokens=3)[0]
    assert hf_lm.loglikelihood([greedy_context], [greedy])[0].is_greedy
    contexts.append(greedy_context)
    continuations.append(greedy)
    expected = hf_lm.loglikelihood(contexts, continuations)
    with _client(server) as client:
        results = client.loglikelihood(contexts, continuations)
    for got, want in zip(results, expected, strict=True):
        assert got.logprob == pytest.approx(want.logprob, abs=1e-3)
        assert (got.is_greedy, got.num_tokens) == (want.is_greedy, want.num_tokens)
    assert results[-1].is_greedy
    body = server.requests[0].body
    assert (body["echo"], body["logprobs"], body["max_tokens"]) == (True, 1, 0)


def test_loglikelihood_falls_back_to_max_tokens_1(
    server: OpenAITestServer, hf_lm: HFLanguageModel
) -> None:
    server.faults.logprobs = "min_tokens_1"
    contexts, continuations = _pairs()
    with _client(server, max_concurrency=1) as client:
        results = client.loglikelihood(contexts[:2], continuations[:2])
    expected = hf_lm.loglikelihood(contexts[:2], continuations[:2])
    for got, want in zip(results, expected, strict=True):
        assert got.logprob == pytest.approx(want.logprob, abs=1e-3)
        assert got.num_tokens == want.num_tokens  # the generated token is not counted
    assert [r.body["max_tokens"] for r in server.requests] == [0, 1, 1]


@pytest.mark.parametrize("mode", ["reject", "omit"])
def test_server_without_logprobs_gives_clear_error(server: OpenAITestServer, mode: str) -> None:
    server.faults.logprobs = mode  # type: ignore[assignment]
    with _client(server) as client, pytest.raises(LogprobsNotSupportedError, match="logprobs"):
        client.loglikelihood(["The quick"], [" brown fox"])
    with _client(server) as client:  # generation still works
        assert len(client.generate(["The quick"], max_new_tokens=2)) == 1


def test_retries_recover_from_500_and_429(
    server: OpenAITestServer, hf_lm: HFLanguageModel, caplog: pytest.LogCaptureFixture
) -> None:
    server.faults.fail_500 = 2
    server.faults.fail_429 = 1
    server.faults.retry_after = "1"
    with caplog.at_level(logging.WARNING), _client(server, max_retries=3) as client:
        out = client.generate(PROMPTS[:1], max_new_tokens=5)
    assert out == hf_lm.generate(PROMPTS[:1], max_new_tokens=5)
    assert len(server.requests) == 4
    messages = [r.getMessage() for r in caplog.records]
    assert sum("HTTP 500" in m for m in messages) == 2
    # The 429's Retry-After (1 s) is honoured instead of the tiny exponential backoff.
    assert any("HTTP 429" in m and "in 1.00 s (Retry-After)" in m for m in messages)


def test_gives_up_after_max_retries_with_clear_error(server: OpenAITestServer) -> None:
    server.faults.fail_500 = 100
    with _client(server, max_retries=2) as client, pytest.raises(APIStatusError) as info:
        client.generate(["x"], max_new_tokens=2)
    err = info.value
    assert (err.status, err.attempts) == (500, 3)
    assert err.url == f"{server.base_url}/completions"
    assert "injected internal server error" in str(err)
    assert "after 3 attempts" in str(err)
    assert len(server.requests) == 3


def test_timeout_raises_instead_of_hanging(server: OpenAITestServer) -> None:
    server.faults.hang = True
    client = _client(server, timeout=0.3, max_retries=1)
    with ThreadPoolExecutor(max_workers=1) as pool:
        call = pool.submit(client.generate, ["x"], max_new_tokens=2)
        # A hang would trip this generous guard rather than block the test run.
        with pytest.raises(APITimeoutError, match=r"timed out after 0.3 s"):
            call.result(timeout=60)
    client.close()
    assert len(server.requests) == 2


def test_connection_refused_is_reported(server: OpenAITestServer) -> None:
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = OpenAICompatibleModel(
        f"http://127.0.0.1:{port}", "m", max_retries=1, backoff_base=0.01, timeout=5
    )
    with client, pytest.raises(APIConnectionError, match=rf":{port}/v1/completions.*ConnectError"):
        client.generate(["x"], max_new_tokens=2)


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (None, "is not valid JSON"),
        (b'{"object": "text_completion"}', r"no field \['choices'\]"),
        (b'{"choices": []}', r"no field \['choices'\]\[0\]"),
        (b"[1, 2]", "not an object"),
    ],
)
def test_malformed_answers_give_clear_errors(
    server: OpenAITestServer, raw: bytes | None, match: str
) -> None:
    if raw is None:
        server.faults.malformed_json = True
    else:
        server.faults.raw_body = raw
    with _client(server) as client, pytest.raises(ResponseFormatError, match=match) as info:
        client.generate(["x"], max_new_tokens=2)
    assert server.base_url in str(info.value)
    assert len(server.requests) == 1  # a broken answer is reported, not retried


def test_concurrency_bound_and_input_order(
    server: OpenAITestServer, hf_lm: HFLanguageModel
) -> None:
    server.faults.delay = 0.2
    prompts = [*PROMPTS, "Six", "Seven"]
    with _client(server, max_concurrency=2) as client:
        out = client.generate(prompts, max_new_tokens=3)
    assert out == hf_lm.generate(prompts, max_new_tokens=3)
    assert server.max_in_flight == 2
    assert len(server.requests) == len(prompts)


def test_api_key_sent_as_bearer_from_env(
    server: OpenAITestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PAPERCRAFT_TEST_KEY", "sk-test-123")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with _client(server, api_key_env="PAPERCRAFT_TEST_KEY") as client:
        client.generate(["x"], max_new_tokens=1)
    with _client(server) as client:  # no key anywhere: no header (local servers need none)
        client.generate(["x"], max_new_tokens=1)
    first, second = (r.headers for r in server.requests)
    assert first["Authorization"] == "Bearer sk-test-123"
    assert "Authorization" not in second


def test_bad_arguments_fail_before_any_request(server: OpenAITestServer) -> None:
    with _client(server) as client:
        with pytest.raises(ValueError, match="max_new_tokens must be >= 0"):
            client.generate(["x"], max_new_tokens=-1)
        with pytest.raises(ValueError, match="same length"):
            client.loglikelihood(["a"], [" b", " c"])
        with pytest.raises(ValueError, match="temperature"):
            client.chat([[{"role": "user", "content": "x"}]], max_new_tokens=1, temperature=-1)
        assert client.generate(["x", "y"], max_new_tokens=0) == ["", ""]
    assert server.requests == []
    with pytest.raises(ValueError, match="base_url must be an http"):
        OpenAICompatibleModel("localhost:8000", "m")
    with pytest.raises(ValueError, match="max_concurrency must be a positive int"):
        OpenAICompatibleModel(server.base_url, "m", max_concurrency=0)
    with pytest.raises(ValueError, match="endpoint must be"):
        OpenAICompatibleModel(server.base_url, "m", endpoint="embeddings")  # type: ignore[arg-type]
    bare = server.base_url.removesuffix("/v1")
    assert OpenAICompatibleModel(bare, "m").base_url == server.base_url


def test_load_language_model_spec_reaches_the_server(server: OpenAITestServer) -> None:
    lm = load_language_model(
        f"openai:{server.base_url}#tiny-llama", timeout=10.0, show_progress=False
    )
    assert isinstance(lm, OpenAICompatibleModel)
    assert lm.model == "tiny-llama"
    assert lm.generate(["Hi"], max_new_tokens=3) == _client(server).generate(
        ["Hi"], max_new_tokens=3
    )


@pytest.mark.parametrize(
    "spec",
    ["", "hf:", "openai:http://x", "openai:#m", "gguf:model.bin", "no-colon", "openai:http://x#"],
)
def test_bad_model_specs_name_the_forms(spec: str) -> None:
    with pytest.raises(ValueError, match="spec"):
        parse_model_spec(spec)
    assert parse_model_spec("hf:./m") == ("hf", "./m", None)
    assert parse_model_spec("openai:http://h:1/v1#a#b") == ("openai", "http://h:1/v1#a", "b")
