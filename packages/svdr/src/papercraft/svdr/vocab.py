"""The vocabulary space SVDR works in: the tokenizer's ids minus its leading reserved block.

SVDR represents a text as one weight per vocabulary entry. The official code drops the first 999
ids of bert-base-uncased (``[PAD]``, ``[unused0..993]``, ``[UNK]``, ``[CLS]``, ``[SEP]``,
``[MASK]``), leaving V = 29,523 dimensions. Here the shift is derived from the tokenizer: the
length of the leading run of ids that are special tokens or ``[unusedN]`` placeholders. For the
bert-base-uncased vocabulary (also all-MiniLM-L6-v2's) that is 999, as the paper.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["VocabularySpace", "reserved_prefix", "tokenizer_fingerprint"]

_UNUSED = re.compile(r"\[unused\d+\]|<unused\d+>")


def reserved_prefix(tokenizer: Any) -> int:
    """Number of leading ids that are special tokens or ``[unusedN]`` placeholders.

    Args:
        tokenizer (PreTrainedTokenizerBase): a transformers tokenizer.

    Returns:
        int: the first id that is an ordinary token (999 for bert-base-uncased).
    """
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    size = len(tokenizer)
    shift = 0
    while shift < size:
        token = tokenizer.convert_ids_to_tokens(shift)
        if shift in special or (isinstance(token, str) and _UNUSED.fullmatch(token)):
            shift += 1
            continue
        break
    if shift >= size:
        raise ValueError("the tokenizer has no ordinary token: every id is special or unused")
    return shift


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A sha256 of the tokenizer's vocabulary (token → id), to tie an index to its tokenizer."""
    vocab = tokenizer.get_vocab()
    digest = hashlib.sha256()
    for token, index in sorted(vocab.items(), key=lambda item: item[1]):
        digest.update(f"{index}\t{token}\n".encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class VocabularySpace:
    """The ids SVDR scores over: ``[shift, vocab_size)``, mapped to columns ``0 … V − 1``.

    Args:
        vocab_size (int): the tokenizer's size (the word-embedding rows).
        shift (int): the reserved leading ids that are dropped.
        fingerprint (str): :func:`tokenizer_fingerprint` of the tokenizer.
    """

    vocab_size: int
    shift: int
    fingerprint: str

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> VocabularySpace:
        return cls(len(tokenizer), reserved_prefix(tokenizer), tokenizer_fingerprint(tokenizer))

    @property
    def dim(self) -> int:
        """``V``, the number of columns (29,523 for bert-base-uncased)."""
        return self.vocab_size - self.shift

    def to_dict(self) -> dict[str, Any]:
        return {"vocab_size": self.vocab_size, "shift": self.shift, "fingerprint": self.fingerprint}
