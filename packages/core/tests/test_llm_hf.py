"""Tests of papercraft.core.llm.hf.HFLanguageModel on a tiny random Llama."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

from papercraft.core.llm import HFLanguageModel, LanguageModel, LoglikelihoodResult, Message
from papercraft.core.llm.base import cut_at_stop
from papercraft.core.testing import sample_texts, tiny_causal_lm, tiny_tokenizer

PROMPTS = [
    "The quick brown fox",
    "Hi",
    "A much longer prompt, with many more tokens in it than any of the others have",
    "Python",
    "Return the value of the expression",
]
CONTEXTS = ["The quick", "Hello", "In the", "Return the value of", "A"]
CONTINUATIONS = [" brown fox", " world", " beginning was the word", " the expression", " b"]


@pytest.fixture(scope="module")
def tiny() -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    return tiny_causal_lm(seed=0)


@pytest.fixture(scope="module")
def lm(tiny: tuple[LlamaForCausalLM, PreTrainedTokenizerFast]) -> HFLanguageModel:
    model, tokenizer = tiny
    return HFLanguageModel(model, tokenizer, batch_size=2, show_progress=False)


def _reference_generate(
    model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, prompt: str, n: int
) -> str:
    """One unpadded prompt through model.generate, greedy."""
    ids = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=n, do_sample=False)
    return str(tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True))


def _reference_loglikelihood(
    model: LlamaForCausalLM, prefix: list[int], cont: list[int]
) -> tuple[float, bool]:
    """Score ``cont`` after ``prefix`` with one plain forward pass."""
    full = torch.tensor([prefix + cont])
    with torch.no_grad():
        logp = torch.log_softmax(model(full).logits[0].double(), dim=-1)
    total, greedy = 0.0, True
    for k, token in enumerate(cont):
        row = logp[len(prefix) + k - 1]
        total += float(row[token])
        greedy = greedy and int(row.argmax()) == token
    return total, greedy


def test_satisfies_protocol(lm: HFLanguageModel) -> None:
    assert isinstance(lm, LanguageModel)


def test_greedy_generate_equals_model_generate(
    tiny: tuple[LlamaForCausalLM, PreTrainedTokenizerFast], lm: HFLanguageModel
) -> None:
    model, tokenizer = tiny
    outputs = lm.generate(PROMPTS, max_new_tokens=8)
    expected = [_reference_generate(model, tokenizer, p, 8) for p in PROMPTS]
    assert outputs == expected
    assert all(out for out in outputs)


def test_batched_equals_unbatched_and_tokenizer_untouched(
    tiny: tuple[LlamaForCausalLM, PreTrainedTokenizerFast],
) -> None:
    model, _ = tiny
    tokenizer = tiny_tokenizer()
    tokenizer.padding_side = "right"  # the backend must pad on the left by itself
    one = HFLanguageModel(model, tokenizer, batch_size=1, show_progress=False)
    many = HFLanguageModel(model, tokenizer, batch_size=4, show_progress=False)
    assert many.generate(PROMPTS, max_new_tokens=6) == one.generate(PROMPTS, max_new_tokens=6)
    batched = many.loglikelihood(CONTEXTS, CONTINUATIONS)
    single = one.loglikelihood(CONTEXTS, CONTINUATIONS)
    for a, b in zip(batched, single, strict=True):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-4)
        assert (a.is_greedy, a.num_tokens) == (b.is_greedy, b.num_tokens)
    assert tokenizer.padding_side == "right"


def test_loglikelihood_equals_manual_computation(
    tiny: tuple[LlamaForCausalLM, PreTrainedTokenizerFast], lm: HFLanguageModel
) -> None:
    model, tokenizer = tiny
    results = lm.loglikelihood(CONTEXTS, CONTINUATIONS)
    assert all(isinstance(r, LoglikelihoodResult) for r in results)
    for ctx, cont, result in zip(CONTEXTS, CONTINUATIONS, results, strict=True):
        ctx_ids = tokenizer(ctx, add_special_tokens=False)["input_ids"]
        cont_ids = tokenizer(cont, add_special_tokens=False)["input_ids"]
        logprob, greedy = _reference_loglikelihood(model, ctx_ids, cont_ids)
        assert result.logprob == pytest.approx(logprob, abs=1e-4)
        assert result.is_greedy == greedy
        assert result.num_tokens == len(cont_ids)
        assert result.logprob < 0


def test_loglikelihood_with_bos_tokenizer_and_empty_context(
    tiny: tuple[LlamaForCausalLM, PreTrainedTokenizerFast],
) -> None:
    model, _ = tiny
    tokenizer = tiny_tokenizer(add_bos_token=True)
    bos_lm = HFLanguageModel(model, tokenizer, show_progress=False)
    assert bos_lm.add_bos
    bos = tokenizer.bos_token_id
    result, empty = bos_lm.loglikelihood(["The quick", ""], [" brown fox", "Hello"])
    enc = tokenizer.encode
    expected, _ = _reference_loglikelihood(
        model,
        [bos, *enc("The quick", add_special_tokens=False)],
        enc(" brown fox", add_special_tokens=False),
    )
    assert result.logprob == pytest.approx(expected, abs=1e-4)
    expected_empty, _ = _reference_loglikelihood(
        model, [bos], enc("Hello", add_special_tokens=False)
    )
    assert empty.logprob == pytest.approx(expected_empty, abs=1e-4)


def test_is_greedy_true_for_the_greedy_continuation(
    tiny: tuple[LlamaForCausalLM, PreTrainedTokenizerFast], lm: HFLanguageModel
) -> None:
    model, tokenizer = tiny
    found = 0
    for context in sample_texts(6, seed=1, min_words=3, max_words=8):
        ids = tokenizer(context, return_tensors="pt")
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=3, do_sample=False)
        new_ids = out[0, ids["input_ids"].shape[1] :].tolist()
        continuation = str(tokenizer.decode(new_ids))
        # Only texts whose separate encoding gives back the same tokens are a fair test.
        if tokenizer(continuation, add_special_tokens=False)["input_ids"] != new_ids:
            continue
        found += 1
        (greedy,) = lm.loglikelihood([context], [continuation])
        assert greedy.is_greedy
        assert greedy.num_tokens == len(new_ids)
    assert found >= 1


def test_stop_strings_cut_at_first_stop(lm: HFLanguageModel) -> None:
    prompt = PROMPTS[0]
    full = lm.generate([prompt], max_new_tokens=10)[0]
    assert len(full) > 6
    early, late = full[2:4], full[5:7]
    cut = lm.generate([prompt, prompt], max_new_tokens=10, stop=[late, early])
    assert cut == [full[: full.index(early)]] * 2
    assert cut_at_stop("abcabc", ["c", "b"]) == "a"
    assert cut_at_stop("abc", ["x"]) == "abc"


def test_sampling_is_seedable_and_leaves_global_rng(
    tiny: tuple[LlamaForCausalLM, PreTrainedTokenizerFast],
) -> None:
    model, tokenizer = tiny
    state = torch.get_rng_state()
    first = HFLanguageModel(model, tokenizer, seed=123, show_progress=False)
    second = HFLanguageModel(model, tokenizer, seed=123, show_progress=False)
    a = first.generate(PROMPTS[:2], max_new_tokens=8, temperature=1.0)
    b = second.generate(PROMPTS[:2], max_new_tokens=8, temperature=1.0)
    assert a == b
    assert torch.equal(torch.get_rng_state(), state)
    # A second call draws a fresh seed; sampling is not greedy decoding.
    assert first.generate(PROMPTS[:2], max_new_tokens=8, temperature=1.0) != a
    assert a != first.generate(PROMPTS[:2], max_new_tokens=8)


def test_chat_uses_template_or_plain_rendering(
    tiny: tuple[LlamaForCausalLM, PreTrainedTokenizerFast], lm: HFLanguageModel
) -> None:
    model, tokenizer = tiny
    conv: list[Message] = [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "there"}],
        },
    ]
    rendered = lm.render_chat(conv)
    assert rendered == "<s>system: Be brief.</s><s>user: Hi\nthere</s><s>assistant: "
    assert lm.chat([conv], max_new_tokens=6) == lm.generate([rendered], max_new_tokens=6)

    plain_tokenizer = copy.deepcopy(tokenizer)
    plain_tokenizer.chat_template = None
    plain = HFLanguageModel(model, plain_tokenizer, show_progress=False)
    text = plain.render_chat(conv)
    assert text == "system: Be brief.\nuser: Hi\nthere\nassistant:"
    assert plain.chat([conv], max_new_tokens=6) == plain.generate([text], max_new_tokens=6)

    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    with pytest.raises(ValueError, match=r"conversations\[0\]\[0\].*'image_url'.*only takes text"):
        lm.chat([[{"role": "user", "content": [image]}]], max_new_tokens=2)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda m: m.generate("abc", max_new_tokens=2), TypeError, "prompts must be a sequence"),
        (
            lambda m: m.generate(["a", 3], max_new_tokens=2),
            TypeError,
            r"prompts\[1\] must be a str",
        ),
        (lambda m: m.generate(["a"], max_new_tokens=-1), ValueError, "max_new_tokens must be >= 0"),
        (
            lambda m: m.generate(["a"], max_new_tokens=2.0),
            TypeError,
            "max_new_tokens must be an int",
        ),
        (
            lambda m: m.generate(["a"], max_new_tokens=2, temperature=-0.1),
            ValueError,
            "temperature",
        ),
        (lambda m: m.generate(["a"], max_new_tokens=2, stop=[""]), ValueError, "stop"),
        (lambda m: m.generate(["a"], max_new_tokens=300), ValueError, "max_length"),
        (lambda m: m.loglikelihood(["a", "b"], [" c"]), ValueError, "same length, got 2 and 1"),
        (lambda m: m.loglikelihood(["a"], [""]), ValueError, r"continuations\[0\] is empty"),
        (
            lambda m: m.chat([[]], max_new_tokens=2),
            ValueError,
            r"conversations\[0\] must be a non-empty",
        ),
        (lambda m: m.chat([[{"content": "x"}]], max_new_tokens=2), ValueError, "'role'"),
        (
            lambda m: m.chat([[{"role": "user", "content": [{"type": "text"}]}]], max_new_tokens=2),
            ValueError,
            "no str 'text'",
        ),
    ],
)
def test_bad_arguments_are_rejected(lm: HFLanguageModel, call, error, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error, match=match):
        call(lm)


def test_constructor_checks_and_zero_tokens(
    tiny: tuple[LlamaForCausalLM, PreTrainedTokenizerFast], lm: HFLanguageModel
) -> None:
    model, tokenizer = tiny
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        HFLanguageModel(model, tokenizer, batch_size=0)
    with pytest.raises(TypeError, match="tokenizer must be a transformers tokenizer"):
        HFLanguageModel(model, "gpt2")  # type: ignore[arg-type]
    assert lm.generate(PROMPTS, max_new_tokens=0) == [""] * len(PROMPTS)
    assert lm.generate([], max_new_tokens=4) == []


def test_long_inputs_are_truncated_from_the_left(
    tiny: tuple[LlamaForCausalLM, PreTrainedTokenizerFast],
) -> None:
    model, tokenizer = tiny
    short = HFLanguageModel(model, tokenizer, max_length=12, show_progress=False)
    context = "word " * 30
    ids = tokenizer(context, add_special_tokens=False)["input_ids"]
    cont = tokenizer(" end", add_special_tokens=False)["input_ids"]
    (result,) = short.loglikelihood([context], [" end"])
    kept = (ids + cont)[-13:]
    expected, _ = _reference_loglikelihood(model, kept[: -len(cont)], cont)
    assert result.logprob == pytest.approx(expected, abs=1e-4)
    with pytest.warns(UserWarning, match="truncated from the left"):
        (text,) = short.generate([context], max_new_tokens=4)
    with torch.no_grad():
        out = model.generate(torch.tensor([ids[-8:]]), max_new_tokens=4, do_sample=False)
    assert text == tokenizer.decode(out[0, 8:], skip_special_tokens=True)


def test_progress_bar_only_for_several_batches(
    tiny: tuple[LlamaForCausalLM, PreTrainedTokenizerFast], capsys: pytest.CaptureFixture[str]
) -> None:
    model, tokenizer = tiny
    HFLanguageModel(model, tokenizer, batch_size=2).loglikelihood(CONTEXTS[:2], CONTINUATIONS[:2])
    assert "loglikelihood" not in capsys.readouterr().err
    HFLanguageModel(model, tokenizer, batch_size=2).loglikelihood(CONTEXTS, CONTINUATIONS)
    assert "loglikelihood" in capsys.readouterr().err
    HFLanguageModel(model, tokenizer, batch_size=2, show_progress=False).loglikelihood(
        CONTEXTS, CONTINUATIONS
    )
    assert "loglikelihood" not in capsys.readouterr().err


def test_from_pretrained_loads_local_files(
    tiny: tuple[LlamaForCausalLM, PreTrainedTokenizerFast], lm: HFLanguageModel, tmp_path: Path
) -> None:
    model, tokenizer = tiny
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded = HFLanguageModel.from_pretrained(
        tmp_path, device="cpu", dtype="float32", show_progress=False
    )
    assert next(loaded.model.parameters()).dtype == torch.float32
    assert loaded.generate(PROMPTS[:2], max_new_tokens=5) == lm.generate(
        PROMPTS[:2], max_new_tokens=5
    )
    with pytest.raises(ValueError, match="dtype must be"):
        HFLanguageModel.from_pretrained(tmp_path, dtype="float8")
    with pytest.raises(FileNotFoundError, match="local files only"):
        HFLanguageModel.from_pretrained(tmp_path / "missing")


def test_load_language_model_from_a_saved_directory(
    tiny: tuple[LlamaForCausalLM, PreTrainedTokenizerFast], lm: HFLanguageModel, tmp_path: Path
) -> None:
    from papercraft.core.llm import load_language_model

    model, tokenizer = tiny
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded = load_language_model(f"hf:{tmp_path}", device="cpu", show_progress=False)
    assert isinstance(loaded, HFLanguageModel)
    assert loaded.generate(PROMPTS[:2], max_new_tokens=4) == lm.generate(
        PROMPTS[:2], max_new_tokens=4
    )
