"""Train a byte-level BPE tokenizer locally (no hub download), for models trained from scratch.

Byte-level BPE (the GPT-2 scheme, Sennrich et al. 2016; Radford et al. 2019) encodes any string:
the 256 byte symbols are the initial alphabet, so no input ever needs an unknown token.
Method packages train their models' tokenizers on their own corpora with it, and
:mod:`papercraft.core.testing` builds its tiny test tokenizer with it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

__all__ = ["train_byte_level_bpe"]

_BYTE_ALPHABET = 256


def train_byte_level_bpe(
    texts: Iterable[str],
    *,
    vocab_size: int,
    special_tokens: Sequence[str] = ("<s>", "</s>", "<pad>"),
    bos_token: str | None = "<s>",
    eos_token: str | None = "</s>",
    pad_token: str | None = "<pad>",
    unk_token: str | None = None,
    model_max_length: int | None = None,
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on ``texts`` and wrap it as a transformers fast tokenizer.

    Special tokens take the first ids, in the order given. Encoding adds no special tokens
    (no BOS/EOS): ``input_ids`` are exactly the text's tokens.

    Args:
        texts (Iterable[str]): the training corpus (consumed once).
        vocab_size (int): the target vocabulary, special tokens included; at least 256 bytes +
            the special tokens. The result may be smaller when the corpus has too few merges.
        special_tokens (Sequence[str]): tokens that get the first ids, in this order.
            Default: ("<s>", "</s>", "<pad>").
        bos_token (str | None): the BOS token (must be among ``special_tokens``). Default: "<s>".
        eos_token (str | None): the EOS token. Default: "</s>".
        pad_token (str | None): the padding token. Default: "<pad>".
        unk_token (str | None): the unknown token, when the model wants one (byte-level BPE
            never produces it). Default: None.
        model_max_length (int | None): recorded on the tokenizer. Default: None (unset).

    Returns:
        PreTrainedTokenizerFast: the trained tokenizer.

    Raises:
        ValueError: if ``vocab_size`` is too small, or a named token is not a special token.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = list(special_tokens)
    if len(set(specials)) != len(specials):
        raise ValueError(f"special_tokens must be distinct, got {specials}")
    minimum = _BYTE_ALPHABET + len(specials)
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < minimum:
        raise ValueError(
            f"vocab_size must be an int >= {minimum} (256 bytes + {len(specials)} special "
            f"tokens), got {vocab_size!r}"
        )
    for name, token in (("bos_token", bos_token), ("eos_token", eos_token),
                        ("pad_token", pad_token), ("unk_token", unk_token)):  # fmt: skip
        if token is not None and token not in specials:
            raise ValueError(f"{name}={token!r} must be one of special_tokens {specials}")

    backend = Tokenizer(models.BPE(unk_token=unk_token))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    extra = {} if model_max_length is None else {"model_max_length": model_max_length}
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=bos_token,
        eos_token=eos_token,
        pad_token=pad_token,
        unk_token=unk_token,
        clean_up_tokenization_spaces=False,
        **extra,
    )
