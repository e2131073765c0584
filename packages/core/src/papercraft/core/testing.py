"""Tiny, deterministic models, tokenizers and texts for tests (no downloads).

Everything here is built locally from CPython's own documentation
(:mod:`pydoc_data.topics`, shipped with every CPython), so tests run offline:

- :func:`tiny_tokenizer` — a byte-level BPE (the GPT-2 / Llama-3 kind) trained with the
  ``tokenizers`` library, wrapped as a :class:`transformers.PreTrainedTokenizerFast`.
- :func:`tiny_wordpiece_tokenizer` — a lower-cased BERT-style WordPiece tokenizer.
- :func:`tiny_llama_config` / :func:`tiny_causal_lm` — a random few-thousand-parameter
  :class:`transformers.LlamaForCausalLM` whose special token ids match the tokenizer.
- :func:`tiny_bert_config` / :func:`tiny_bert` — a random :class:`transformers.BertModel` encoder
  with its WordPiece tokenizer, for embedding-model packages.
- :func:`sample_texts` — deterministic snippets of real English prose.
- :func:`seed_everything` — seed Python, NumPy and torch in one call.
- :func:`run_torchrun` — run a module under ``torch.distributed.run`` on a free local port
  (multi-process CPU / gloo tests).

Determinism: for a given CPython version (``pydoc_data.topics`` changes between Python
releases) the same arguments give byte-identical tokenizers, identical weights and identical
texts, in any process. Builders seed a *forked* torch RNG, so calling them does not disturb the
caller's global random state.
"""

from __future__ import annotations

import functools
import json
import os
import random
import re
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from transformers import (
        BertConfig,
        BertModel,
        LlamaConfig,
        LlamaForCausalLM,
        PreTrainedTokenizerFast,
    )

__all__ = [
    "BOS_TOKEN",
    "EOS_TOKEN",
    "PAD_TOKEN",
    "UNK_TOKEN",
    "run_torchrun",
    "sample_texts",
    "seed_everything",
    "tiny_bert",
    "tiny_bert_config",
    "tiny_causal_lm",
    "tiny_llama_config",
    "tiny_tokenizer",
    "tiny_wordpiece_tokenizer",
]

UNK_TOKEN = "<unk>"
BOS_TOKEN = "<s>"
EOS_TOKEN = "</s>"
PAD_TOKEN = "<pad>"
# Ids 0..3 in this order, as in Llama-2 (unk 0, bos 1, eos 2) plus a real pad token.
_BPE_SPECIALS = (UNK_TOKEN, BOS_TOKEN, EOS_TOKEN, PAD_TOKEN)
# BERT's specials: [PAD] is id 0 as BertConfig.pad_token_id expects.
_WORDPIECE_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_BYTE_ALPHABET_SIZE = 256
_MAX_VOCAB_SIZE = 8192  # the corpus (~0.5 MB) supports about 9k BPE tokens

# A minimal chat template so chat-style code paths (apply_chat_template) can run on the tiny
# tokenizer. Each turn is "<s>role: content</s>"; the generation prompt opens an assistant turn.
_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<s>' + message['role'] + ': ' + message['content'] + '</s>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<s>assistant: ' }}{% endif %}"
)


def seed_everything(seed: int) -> None:
    """Seed Python's :mod:`random`, NumPy's legacy global RNG and torch (CPU and CUDA).

    Args:
        seed (int): the seed, ``0 <= seed < 2**32``.

    Raises:
        ValueError: if ``seed`` is not an int in ``[0, 2**32)``.
    """
    _check_seed(seed)
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - seeding the legacy global RNG is the point here
    torch.manual_seed(seed)  # also seeds every CUDA device


# --------------------------------------------------------------------------------------------
# Corpus
# --------------------------------------------------------------------------------------------


def run_torchrun(
    module: str,
    args: Sequence[str],
    *,
    nproc: int = 2,
    env: Mapping[str, str] | None = None,
    timeout: float = 240.0,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m module args`` under ``torch.distributed.run`` with ``nproc`` processes.

    The rendezvous uses ``127.0.0.1`` and a port the OS reports free; every process gets
    ``OMP_NUM_THREADS=1`` (no oversubscription on small CI machines) and
    ``TOKENIZERS_PARALLELISM=false`` unless ``env`` sets them.

    Args:
        module (str): the module to run, e.g. ``"papercraft.yoco.train"``.
        args (Sequence[str]): its arguments.
        nproc (int): processes (``--nproc-per-node``). Default: 2.
        env (Mapping[str, str] | None): extra environment variables. Default: None.
        timeout (float): seconds before the run is killed (``subprocess.TimeoutExpired``).
            Default: 240.

    Returns:
        subprocess.CompletedProcess[str]: with ``stdout`` and ``stderr`` captured as text.

    Raises:
        ValueError: if ``nproc`` is not a positive int.
    """
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"nproc must be a positive int, got {nproc!r}")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
        "--master-addr", "127.0.0.1", "--master-port", str(port), "-m", module, *args,
    ]  # fmt: skip
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    full_env.update(env or {})
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=full_env)


@functools.lru_cache(maxsize=1)
def _corpus() -> tuple[str, ...]:
    """The documentation topics of this CPython, in sorted key order."""
    from pydoc_data.topics import topics

    return tuple(topics[key] for key in sorted(topics))


_UNDERLINE = re.compile(r"^[*=\-~^\"'`#+]{3,}$")
_PROSE_WORD = re.compile(r"^[A-Za-z][A-Za-z'\-]*[.,;:!?)]?$")


@functools.lru_cache(maxsize=1)
def _prose_paragraphs() -> tuple[tuple[str, ...], ...]:
    """Paragraphs of plain English from the corpus, each as a tuple of words.

    Code blocks (indented), grammar rules, headings, lists and tables are dropped: a paragraph is
    kept when none of its lines is indented, it ends a sentence, and at least 85% of its words are
    ordinary words.
    """
    paragraphs: list[tuple[str, ...]] = []
    for text in _corpus():
        for block in re.split(r"\n\s*\n", text):
            lines = block.split("\n")
            if not block.strip() or any(line[:1].isspace() for line in lines):
                continue
            if any(_UNDERLINE.match(line.strip()) for line in lines):
                continue
            if lines[0].lstrip().startswith(("*", "-", "+", "|", "#", ">>>", "[")):
                continue
            words = tuple(" ".join(lines).split())
            if len(words) < 8 or not words[-1].endswith((".", "!", "?")):
                continue
            ordinary = sum(1 for word in words if _PROSE_WORD.match(word))
            if ordinary >= 0.85 * len(words):
                paragraphs.append(words)
    return tuple(paragraphs)


def sample_texts(n: int, *, seed: int = 0, min_words: int = 8, max_words: int = 64) -> list[str]:
    """Deterministic snippets of real English prose from CPython's documentation.

    Each snippet starts at the beginning of a sentence of a prose paragraph and holds between
    ``min_words`` and ``max_words`` words (uniformly drawn, capped by what the paragraph has left,
    never fewer than ``min_words``).

    Args:
        n (int): number of snippets, ``>= 0``.
        seed (int): seed of the draw; the same seed gives the same list. Default: 0
        min_words (int): fewest words per snippet, ``>= 1``. Default: 8
        max_words (int): most words per snippet, ``>= min_words``. Default: 64

    Returns:
        list[str]: ``n`` snippets (words joined by single spaces).

    Raises:
        ValueError: on a negative ``n``, a bad seed, or ``min_words``/``max_words`` out of range.
    """
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be an int >= 0, got {n!r}")
    _check_seed(seed)
    if not isinstance(min_words, int) or min_words < 1:
        raise ValueError(f"min_words must be an int >= 1, got {min_words!r}")
    if not isinstance(max_words, int) or max_words < min_words:
        raise ValueError(f"max_words must be an int >= min_words ({min_words}), got {max_words!r}")
    # Sentence starts that leave at least min_words words: (paragraph index, word index).
    paragraphs = _prose_paragraphs()
    starts: list[tuple[int, int]] = []
    for p_index, words in enumerate(paragraphs):
        for w_index in range(len(words) - min_words + 1):
            after_stop = w_index == 0 or words[w_index - 1].endswith((".", "!", "?"))
            if after_stop and (words[w_index][0].isupper() or words[w_index][0] in '"“'):
                starts.append((p_index, w_index))
    if not starts:
        raise ValueError(
            f"min_words={min_words} is longer than every prose paragraph of the corpus; "
            "use a smaller value"
        )
    rng = random.Random(seed)
    snippets: list[str] = []
    for _ in range(n):
        p_index, w_index = starts[rng.randrange(len(starts))]
        words = paragraphs[p_index]
        length = min(rng.randint(min_words, max_words), len(words) - w_index)
        snippets.append(" ".join(words[w_index : w_index + length]))
    return snippets


# --------------------------------------------------------------------------------------------
# Tokenizers
# --------------------------------------------------------------------------------------------


def _check_vocab_size(vocab_size: int, minimum: int) -> None:
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool):
        raise ValueError(f"vocab_size must be an int, got {vocab_size!r}")
    if not minimum <= vocab_size <= _MAX_VOCAB_SIZE:
        raise ValueError(f"vocab_size must be in [{minimum}, {_MAX_VOCAB_SIZE}], got {vocab_size}")


@functools.lru_cache(maxsize=16)
def _trained_bpe_json(vocab_size: int) -> str:
    """Train the byte-level BPE once per process and size; return its JSON serialization."""
    from papercraft.core.tokenization import train_byte_level_bpe

    tokenizer = train_byte_level_bpe(
        _corpus(),
        vocab_size=vocab_size,
        special_tokens=_BPE_SPECIALS,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        unk_token=UNK_TOKEN,
    ).backend_tokenizer
    if tokenizer.get_vocab_size() != vocab_size:
        raise ValueError(
            f"vocab_size={vocab_size} is more than the corpus supports "
            f"({tokenizer.get_vocab_size()} tokens); use a smaller value"
        )
    return str(tokenizer.to_str())


def tiny_tokenizer(
    vocab_size: int = 512, *, add_bos_token: bool = False
) -> PreTrainedTokenizerFast:
    """A small byte-level BPE tokenizer trained locally on CPython's documentation.

    Special tokens: ``<unk>`` (id 0), ``<s>`` = BOS (id 1), ``</s>`` = EOS (id 2),
    ``<pad>`` (id 3). Byte-level, so any string (any script, emoji, control characters)
    encodes and decodes back exactly; ``<unk>`` is never produced.

    BOS choice: by default ``tokenizer(text)`` does **not** add ``<s>`` (GPT-2/Qwen
    convention), so ``input_ids`` are exactly the BPE tokens of the text and packing or
    scoring code sees no hidden tokens. Pass ``add_bos_token=True`` to get the Llama
    convention (``<s>`` prepended when ``add_special_tokens=True``) and test code paths that
    must cope with it. EOS is never appended automatically.

    The training (about 0.1 s) is cached per process and size (:func:`functools.lru_cache`);
    every call returns a *fresh* tokenizer object built from the cached result, so a test that
    changes e.g. ``padding_side`` cannot leak into another one. A bare chat template
    (``<s>role: content</s>`` per turn) is set so ``apply_chat_template`` works.

    Args:
        vocab_size (int): total vocabulary including the 4 special tokens, in [260, 8192].
            Default: 512
        add_bos_token (bool): prepend ``<s>`` when encoding with special tokens. Default: False

    Returns:
        PreTrainedTokenizerFast: the tokenizer (``len(tokenizer) == vocab_size``).

    Raises:
        ValueError: if ``vocab_size`` is out of range.
    """
    from tokenizers import Tokenizer, processors
    from transformers import PreTrainedTokenizerFast

    _check_vocab_size(vocab_size, _BYTE_ALPHABET_SIZE + len(_BPE_SPECIALS))
    backend = Tokenizer.from_str(_trained_bpe_json(vocab_size))
    byte_level = processors.ByteLevel(trim_offsets=False)
    if add_bos_token:
        bos_id = backend.token_to_id(BOS_TOKEN)
        template = processors.TemplateProcessing(
            single=f"{BOS_TOKEN} $A",
            pair=f"{BOS_TOKEN} $A {BOS_TOKEN} $B",
            special_tokens=[(BOS_TOKEN, bos_id)],
        )
        backend.post_processor = processors.Sequence([byte_level, template])
    else:
        backend.post_processor = byte_level
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        unk_token=UNK_TOKEN,
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = _CHAT_TEMPLATE
    return tokenizer


@functools.lru_cache(maxsize=16)
def _trained_wordpiece_json(vocab_size: int) -> str:
    """Train the WordPiece tokenizer once per process and size; return its JSON serialization."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=None)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        special_tokens=list(_WORDPIECE_SPECIALS),
        continuing_subword_prefix="##",
        show_progress=False,
    )
    tokenizer.train_from_iterator(_corpus(), trainer=trainer)
    if tokenizer.get_vocab_size() != vocab_size:
        raise ValueError(
            f"vocab_size={vocab_size} is more than the corpus supports "
            f"({tokenizer.get_vocab_size()} tokens); use a smaller value"
        )
    # The trainer's token *set* is deterministic but its id assignment follows a hash-set
    # order that changes between processes. WordPiece tokenization depends only on the set,
    # so renumber: specials first (fixed order), then every other token in string order.
    data = json.loads(tokenizer.to_str())
    vocab: dict[str, int] = data["model"]["vocab"]
    others = sorted(token for token in vocab if token not in _WORDPIECE_SPECIALS)
    data["model"]["vocab"] = {
        token: index for index, token in enumerate((*_WORDPIECE_SPECIALS, *others))
    }
    for added in data["added_tokens"]:
        added["id"] = data["model"]["vocab"][added["content"]]
    return json.dumps(data, ensure_ascii=False)


def tiny_wordpiece_tokenizer(vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """A small lower-casing BERT-style WordPiece tokenizer trained on CPython's documentation.

    Special tokens ``[PAD]`` (id 0), ``[UNK]``, ``[CLS]``, ``[SEP]``, ``[MASK]``; encoding with
    special tokens gives ``[CLS] A [SEP]`` and ``[CLS] A [SEP] B [SEP]`` with BERT's
    ``token_type_ids``. Characters outside the training alphabet become ``[UNK]``. Training is
    cached per process; each call returns a fresh object.

    Args:
        vocab_size (int): total vocabulary including the specials, in [256, 8192]. Default: 512

    Returns:
        PreTrainedTokenizerFast: the tokenizer (``len(tokenizer) == vocab_size``).

    Raises:
        ValueError: if ``vocab_size`` is out of range.
    """
    from tokenizers import Tokenizer, processors
    from transformers import PreTrainedTokenizerFast

    _check_vocab_size(vocab_size, 256)
    backend = Tokenizer.from_str(_trained_wordpiece_json(vocab_size))
    cls_id = backend.token_to_id("[CLS]")
    sep_id = backend.token_to_id("[SEP]")
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0",
        pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        clean_up_tokenization_spaces=True,
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


def _check_seed(seed: int) -> None:
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an int in [0, 2**32), got {seed!r}")


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


def _check_heads(hidden_size: int, num_heads: int) -> None:
    if hidden_size % num_heads:
        raise ValueError(
            f"hidden_size ({hidden_size}) must be divisible by num_heads ({num_heads})"
        )


def tiny_llama_config(
    *,
    vocab_size: int = 512,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 64,
    max_position_embeddings: int = 256,
    pad_token_id: int | None = 3,
    bos_token_id: int | None = 1,
    eos_token_id: int | None = 2,
    **overrides: Any,
) -> LlamaConfig:
    """A tiny :class:`transformers.LlamaConfig` (grouped-query attention, RoPE, SwiGLU).

    The default special ids match :func:`tiny_tokenizer` (bos 1, eos 2, pad 3).

    Args:
        vocab_size (int): embedding rows. Default: 512
        hidden_size (int): model width; ``hidden_size / num_heads`` must be even (RoPE).
            Default: 32
        num_layers (int): decoder layers. Default: 2
        num_heads (int): query heads. Default: 4
        num_kv_heads (int): key/value heads, dividing ``num_heads``. Default: 2
        intermediate_size (int): SwiGLU hidden width. Default: 64
        max_position_embeddings (int): longest sequence. Default: 256
        pad_token_id (int | None): padding id. Default: 3
        bos_token_id (int | None): begin-of-sequence id. Default: 1
        eos_token_id (int | None): end-of-sequence id. Default: 2
        **overrides (Any): any other ``LlamaConfig`` field (e.g. ``tie_word_embeddings``).

    Returns:
        LlamaConfig: the configuration.

    Raises:
        ValueError: on non-positive sizes or incompatible head counts.
    """
    from transformers import LlamaConfig

    _check_positive(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_position_embeddings,
    )
    _check_heads(hidden_size, num_heads)
    if (hidden_size // num_heads) % 2:
        raise ValueError(
            f"head dim hidden_size/num_heads must be even for RoPE, got {hidden_size // num_heads}"
        )
    if num_heads % num_kv_heads:
        raise ValueError(
            f"num_heads ({num_heads}) must be divisible by num_kv_heads ({num_kv_heads})"
        )
    for name, token_id in (("pad", pad_token_id), ("bos", bos_token_id), ("eos", eos_token_id)):
        if token_id is not None and not 0 <= token_id < vocab_size:
            raise ValueError(
                f"{name}_token_id must be in [0, vocab_size={vocab_size}), got {token_id}"
            )
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_position_embeddings,
        pad_token_id=pad_token_id,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        **overrides,
    )


def tiny_causal_lm(
    *,
    seed: int = 0,
    vocab_size: int | None = None,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 64,
    max_position_embeddings: int = 256,
) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    """A tiny random Llama causal LM (float32, eval mode) and its matching tokenizer.

    The tokenizer is :func:`tiny_tokenizer` of the same vocabulary size (no automatic BOS), with
    ``model_max_length = max_position_embeddings``; the config's and generation config's
    pad/bos/eos ids are the tokenizer's. Weights depend only on ``seed`` and the sizes; the
    caller's global torch RNG state is left untouched.

    Args:
        seed (int): weight-init seed. Default: 0
        vocab_size (int | None): vocabulary of tokenizer and model; None means 512. Default: None
        hidden_size (int): model width. Default: 32
        num_layers (int): decoder layers. Default: 2
        num_heads (int): query heads. Default: 4
        num_kv_heads (int): key/value heads. Default: 2
        intermediate_size (int): SwiGLU hidden width. Default: 64
        max_position_embeddings (int): longest sequence. Default: 256

    Returns:
        tuple[LlamaForCausalLM, PreTrainedTokenizerFast]: model and tokenizer.

    Raises:
        ValueError: on a bad seed, size or head count.
    """
    from transformers import LlamaForCausalLM

    _check_seed(seed)
    tokenizer = tiny_tokenizer(512 if vocab_size is None else vocab_size)
    tokenizer.model_max_length = max_position_embeddings
    config = tiny_llama_config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_position_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model.float().eval(), tokenizer


def tiny_bert_config(
    *,
    vocab_size: int = 512,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 4,
    intermediate_size: int = 64,
    max_position_embeddings: int = 128,
    pad_token_id: int = 0,
    **overrides: Any,
) -> BertConfig:
    """A tiny :class:`transformers.BertConfig` (post-norm encoder, learned absolute positions).

    Args:
        vocab_size (int): embedding rows. Default: 512
        hidden_size (int): model width. Default: 32
        num_layers (int): encoder layers. Default: 2
        num_heads (int): attention heads, dividing ``hidden_size``. Default: 4
        intermediate_size (int): feed-forward width. Default: 64
        max_position_embeddings (int): longest sequence. Default: 128
        pad_token_id (int): padding id. Default: 0
        **overrides (Any): any other ``BertConfig`` field (e.g. ``hidden_dropout_prob``).

    Returns:
        BertConfig: the configuration.

    Raises:
        ValueError: on non-positive sizes or a head count not dividing ``hidden_size``.
    """
    from transformers import BertConfig

    _check_positive(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_heads=num_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_position_embeddings,
    )
    _check_heads(hidden_size, num_heads)
    if not 0 <= pad_token_id < vocab_size:
        raise ValueError(
            f"pad_token_id must be in [0, vocab_size={vocab_size}), got {pad_token_id}"
        )
    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_position_embeddings,
        pad_token_id=pad_token_id,
        **overrides,
    )


def tiny_bert(
    *,
    seed: int = 0,
    vocab_size: int | None = None,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 4,
    intermediate_size: int = 64,
    max_position_embeddings: int = 128,
    add_pooling_layer: bool = True,
) -> tuple[BertModel, PreTrainedTokenizerFast]:
    """A tiny random BERT encoder (float32, eval mode) and its WordPiece tokenizer.

    Args:
        seed (int): weight-init seed. Default: 0
        vocab_size (int | None): vocabulary of tokenizer and model; None means 512. Default: None
        hidden_size (int): model width. Default: 32
        num_layers (int): encoder layers. Default: 2
        num_heads (int): attention heads. Default: 4
        intermediate_size (int): feed-forward width. Default: 64
        max_position_embeddings (int): longest sequence; also the tokenizer's
            ``model_max_length``. Default: 128
        add_pooling_layer (bool): build BERT's ``[CLS]`` pooler. Default: True

    Returns:
        tuple[BertModel, PreTrainedTokenizerFast]: model and tokenizer.

    Raises:
        ValueError: on a bad seed, size or head count.
    """
    from transformers import BertModel

    _check_seed(seed)
    tokenizer = tiny_wordpiece_tokenizer(512 if vocab_size is None else vocab_size)
    tokenizer.model_max_length = max_position_embeddings
    config = tiny_bert_config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_heads=num_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_position_embeddings,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertModel(config, add_pooling_layer=add_pooling_layer)
    return model.float().eval(), tokenizer
