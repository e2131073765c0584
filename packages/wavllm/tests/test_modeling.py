"""Tests of the WavLLM model and processor on tiny configs (and real espeak-ng speech)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from papercraft.wavllm.configuration import WavLLMConfig, audio_token_count, subsampled_length
from papercraft.wavllm.modeling import Conv1dSubsampler, WavLLMForConditionalGeneration
from papercraft.wavllm.processing import AUDIO_TOKEN, WavLLMProcessor
from papercraft.wavllm.speech import char_tokenizer, espeak, espeak_available

needs_espeak = pytest.mark.skipif(not espeak_available(), reason="espeak-ng is not installed")


@pytest.fixture(scope="module")
def parts() -> tuple[WavLLMForConditionalGeneration, WavLLMProcessor]:
    tok = char_tokenizer()
    config = WavLLMConfig.tiny(
        vocab_size=len(tok), audio_token_id=tok.convert_tokens_to_ids(AUDIO_TOKEN)
    )
    torch.manual_seed(0)
    model = WavLLMForConditionalGeneration(config).eval()
    return model, WavLLMProcessor(tok, config, system_prompt="Listen.")


def _tone(seconds: float, freq: float = 220.0, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (
        0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * np.random.RandomState(int(freq)).randn(len(t))
    ).astype(np.float32)


def test_subsampler_and_token_rate(
    parts: tuple[WavLLMForConditionalGeneration, WavLLMProcessor],
) -> None:
    model, processor = parts
    sub = Conv1dSubsampler(8, 6, 4)
    assert sub(torch.randn(2, 50, 8)).shape == (2, 13, 4)
    assert [subsampled_length(n) for n in (1, 4, 5, 50, 51)] == [1, 1, 2, 13, 13]
    config = model.config
    for seconds in (0.5, 1.0, 2.0, 4.0):
        n = audio_token_count(int(seconds * 16000), config)
        assert abs(n - 12.5 * seconds) <= 1  # 80 ms per audio token
        batch = processor([_tone(seconds)], ["Say it."])
        audio = model.encode_audio(batch["input_features"], batch["feature_lengths"], batch["chunk_counts"],
                                   batch["input_values"], batch["wav_lengths"])  # fmt: skip
        assert audio[0].shape == (n, config.text_config.hidden_size)
        assert int((batch["input_ids"] == config.audio_token_id).sum()) == n
    long = processor([_tone(12.0)], ["Say it."])  # 5 s windows in the tiny config: 3 windows
    assert long["chunk_counts"].tolist() == [3]
    assert int((long["input_ids"] == config.audio_token_id).sum()) == audio_token_count(
        12 * 16000, config
    )


def test_batch_invariance(parts: tuple[WavLLMForConditionalGeneration, WavLLMProcessor]) -> None:
    model, processor = parts
    clips = [_tone(0.7, 200), _tone(1.9, 330), _tone(1.2, 440)]
    prompts = ["Transcribe.", "What is said here?", "Go."]
    batch = processor(clips, prompts, ["ab", "cde", "f"])
    with torch.no_grad():
        together = model(**batch).logits
        for i in range(3):
            alone = processor([clips[i]], [prompts[i]], [["ab", "cde", "f"][i]])
            logits = model(**alone).logits[0]
            assert torch.allclose(logits, together[i, : logits.shape[0]], atol=1e-4)


def test_zero_gate_is_the_base_model_and_prompts_change_the_gate(
    parts: tuple[WavLLMForConditionalGeneration, WavLLMProcessor],
) -> None:
    model, processor = parts
    lm = model.language_model
    for name, param in lm.named_parameters():  # make the LoRA deltas non-zero
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.5)
    ids = torch.tensor([[5, 20, 21, 22, 23]])
    with torch.no_grad():
        with lm.disable_adapter():
            base = lm(input_ids=ids).logits
        plain = lm(input_ids=ids).logits
        model._gate = torch.zeros(1, model.config.text_config.hidden_size)
        gated = lm(input_ids=ids).logits
        model._gate = None
    assert not torch.allclose(plain, base, atol=1e-4)  # LoRA is active
    assert torch.allclose(gated, base, atol=1e-6)  # gate 0: exactly the base LM
    batch = processor([_tone(1.0), _tone(1.0)], ["Transcribe the speech.", "Is the speaker happy?"])
    with torch.no_grad():
        gates = model.prompt_gate(batch["prompt_input_ids"], batch["prompt_attention_mask"])
    assert gates.shape == (2, model.config.text_config.hidden_size)
    assert gates.min() >= 0
    assert gates.max() <= model.config.gate_max
    assert not torch.allclose(gates[0], gates[1])
    for name, param in lm.named_parameters():
        if "lora_B" in name:
            torch.nn.init.zeros_(param)


def test_stages_train_only_what_they_should(
    parts: tuple[WavLLMForConditionalGeneration, WavLLMProcessor],
) -> None:
    model, _ = parts
    for stage in (1, 2):
        model.set_stage(stage)
        names = {n for n, p in model.named_parameters() if p.requires_grad}
        assert not any(n.startswith(("whisper.", "wavlm.")) for n in names)
        assert all("lora_" in n for n in names if n.startswith("language_model."))
        assert any("lora_A" in n for n in names)
        assert "wavlm_layer_weights" in names
        assert any(n.startswith("fusion.") for n in names)
        assert any(n.startswith("prompt_adapter.") for n in names) == (stage == 2)
    model.set_stage(1)
    with pytest.raises(ValueError, match="stage"):
        model.set_stage(3)


def test_template_and_label_masking(
    parts: tuple[WavLLMForConditionalGeneration, WavLLMProcessor],
) -> None:
    _model, processor = parts
    batch = processor([_tone(0.5), _tone(0.9)], ["Hi.", "Longer prompt."], ["ok", "fine"])
    tok = processor.tokenizer
    for i, target in enumerate(["ok", "fine"]):
        labelled = batch["labels"][i][batch["labels"][i] != -100].tolist()
        assert tok.decode(labelled) == f" {target}</s>"
        text = tok.decode(batch["input_ids"][i][batch["attention_mask"][i].bool()].tolist())
        assert text.startswith("<s>[INST]<<SYS>>\nListen.\n<</SYS>>\n\n<SPEECH><audio>")
        assert "</SPEECH> " + ["Hi.", "Longer prompt."][i] + " [/INST] " + target + "</s>" in text
    assert (
        tok.decode(batch["prompt_input_ids"][0][batch["prompt_attention_mask"][0].bool()].tolist())
        == "Hi."
    )


def test_bad_inputs_get_clear_errors(
    parts: tuple[WavLLMForConditionalGeneration, WavLLMProcessor],
) -> None:
    model, processor = parts
    with pytest.raises(ValueError, match=r"audios\[0\] is empty"):
        processor([np.zeros(0, np.float32)], ["x"])
    with pytest.raises(ValueError, match="placeholder"):
        processor([_tone(1.0)], text=["no placeholder here"])
    with pytest.raises(ValueError, match="44100 Hz but the model expects 16000"):
        processor([_tone(1.0, rate=44100)], ["x"], sampling_rate=44100, resample_audio=False)
    resampled = processor([_tone(1.0, rate=8000)], ["x"], sampling_rate=8000)
    assert int(resampled["wav_lengths"][0]) == 16000
    with pytest.raises(ValueError, match="audio placeholders but no audio"):
        model(input_ids=torch.tensor([[model.config.audio_token_id, 7]]))
    with pytest.raises(ValueError, match="exactly one of"):
        processor([_tone(1.0)])


def test_save_load_round_trip(
    parts: tuple[WavLLMForConditionalGeneration, WavLLMProcessor], tmp_path: Path
) -> None:
    model, processor = parts
    model.save_pretrained(tmp_path)
    loaded = WavLLMForConditionalGeneration.from_pretrained(tmp_path, stage=2).eval()
    assert loaded.stage == 2
    assert not any(
        p.requires_grad for n, p in loaded.named_parameters() if n.startswith("whisper.")
    )
    batch = processor([_tone(1.1)], ["Transcribe."], ["abc"])
    with torch.no_grad():
        model.set_stage(2)
        assert torch.allclose(model(**batch).logits, loaded(**batch).logits, atol=1e-5)
        model.set_stage(1)


@needs_espeak
def test_real_speech_loss_falls(tmp_path: Path) -> None:
    from papercraft.wavllm.training import ManifestRow, StageConfig, train_curriculum

    tok = char_tokenizer()
    config = WavLLMConfig.tiny(
        vocab_size=len(tok), audio_token_id=tok.convert_tokens_to_ids(AUDIO_TOKEN)
    )
    processor = WavLLMProcessor(tok, config, system_prompt="Transcribe.")
    words = ["one", "two", "three", "four"]
    rows = [ManifestRow(f"{w}-{v}", espeak(w, voice=v), "Word?", w)
            for w in words for v in ("en-us", "en-gb+m3")]  # fmt: skip
    torch.manual_seed(0)
    model = WavLLMForConditionalGeneration(config)
    collate = __import__("papercraft.wavllm.training", fromlist=["SpeechCollator"]).SpeechCollator(
        processor
    )
    with torch.no_grad():
        before = float(model(**collate(rows)).loss)
    train_curriculum(model, processor, [StageConfig(1, rows, epochs=12, learning_rate=3e-3, batch_size=8,
                                                    train_language_model=True)], tmp_path)  # fmt: skip
    with torch.no_grad():
        after = float(model(**collate(rows)).loss)
    assert after < 0.6 * before
    assert (tmp_path / "stage-1" / "model.safetensors").is_file()


def test_openai_whisper_checkpoint_conversion(tmp_path: Path) -> None:
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    from papercraft.wavllm.loading import (
        hf_to_openai_encoder_state,
        openai_to_hf_encoder_state,
        whisper_encoder_from_openai,
    )

    config = WavLLMConfig.tiny().whisper_config
    torch.manual_seed(1)
    reference = WhisperEncoder(config).eval()
    state = hf_to_openai_encoder_state(reference.state_dict())
    assert "encoder.blocks.0.attn.query.weight" in state
    assert "encoder.ln_post.weight" in state
    assert openai_to_hf_encoder_state(state).keys() == reference.state_dict().keys()
    dims = {"n_mels": config.num_mel_bins, "n_audio_ctx": config.max_source_positions,
            "n_audio_state": config.d_model, "n_audio_head": config.encoder_attention_heads,
            "n_audio_layer": config.encoder_layers}  # fmt: skip
    torch.save({"dims": dims, "model_state_dict": state}, tmp_path / "tiny.pt")
    converted = whisper_encoder_from_openai(tmp_path / "tiny.pt")
    mel = torch.randn(1, config.num_mel_bins, 2 * config.max_source_positions)
    with torch.no_grad():
        assert torch.allclose(
            converted(mel).last_hidden_state, reference(mel).last_hidden_state, atol=1e-5
        )
    torch.save({"weights": state}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an openai-whisper checkpoint"):
        whisper_encoder_from_openai(tmp_path / "other.pt")


def test_build_from_pretrained_parts_on_disk(tmp_path: Path) -> None:
    from transformers import LlamaForCausalLM, WavLMModel, WhisperModel

    from papercraft.wavllm.loading import build_from_pretrained

    tiny = WavLLMConfig.tiny()
    torch.manual_seed(2)
    whisper = WhisperModel(tiny.whisper_config)
    whisper.save_pretrained(tmp_path / "whisper")
    WavLMModel(tiny.wavlm_config).save_pretrained(tmp_path / "wavlm")
    llm = LlamaForCausalLM(tiny.text_config)
    llm.save_pretrained(tmp_path / "llm")
    model = build_from_pretrained(whisper=tmp_path / "whisper", wavlm=tmp_path / "wavlm",
                                  language_model=tmp_path / "llm", audio_token_id=3, lora_r=4,
                                  lora_alpha=4, adapter_dim=48, adapter_bottleneck=24,
                                  wavlm_subsample_mid=32, prompt_adapter_dim=32)  # fmt: skip
    assert torch.equal(model.whisper.conv1.weight, whisper.encoder.conv1.weight)
    base = model.language_model.get_base_model()
    assert torch.equal(base.model.embed_tokens.weight, llm.model.embed_tokens.weight)
    assert model.config.lora_r == 4
    assert model.stage == 1
