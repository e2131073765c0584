"""A large English passage corpus made from text every Python installation ships, offline.

Benchmarks of index build time, size and latency (SiDR, arXiv 2405.01924, §5.3 "index cost")
need tens of thousands of passages, and a test machine may have no network. Two sources are
always present:

* ``"pydoc"`` — CPython's ``pydoc_data.topics``: the language reference topics that ``help()``
  shows (about 465k characters, one document per topic).
* ``"stdlib"`` — the docstrings of the standard library's modules, classes and functions, read
  by parsing every ``*.py`` file under ``sysconfig.get_paths()["stdlib"]`` with :mod:`ast`
  (nothing is imported or run). ``site-packages``, test suites (``test``/``tests`` folders),
  ``idlelib``, ``lib2to3``, ``turtledemo``, ``ensurepip`` and ``pydoc_data`` are skipped. One
  document per file: its docstrings joined in source order.

:func:`offline_corpus` cleans whitespace (every run of whitespace becomes one space), cuts each
document into windows of ``words`` words and, when one pass gives too few passages, adds passes of
overlapping windows that start at shifted offsets (see the function). Exact duplicates are
removed and the result is shuffled with a fixed seed, so any prefix mixes all sources.
:func:`corpus_queries` samples short keyword queries from the passages, for latency measurement.
"""

from __future__ import annotations

import ast
import functools
import os
import random
import re
import sysconfig
from collections.abc import Sequence
from pathlib import Path

__all__ = ["SOURCES", "corpus_queries", "offline_corpus"]

SOURCES = ("pydoc", "stdlib")
_SKIPPED_DIRS = frozenset(
    {
        "site-packages",
        "dist-packages",
        "test",
        "tests",
        "idlelib",
        "lib2to3",
        "turtledemo",
        "ensurepip",
        "pydoc_data",
        "__pycache__",
    }
)
_DOCSTRING_NODES = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
_WORD = re.compile(r"[A-Za-z]{4,}")
# Function words that make poor keyword queries (the query words should carry content).
_STOPWORDS = frozenset(
    [
        "about",
        "above",
        "after",
        "again",
        "against",
        "also",
        "although",
        "among",
        "another",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "cannot",
        "could",
        "does",
        "doing",
        "down",
        "during",
        "each",
        "either",
        "else",
        "even",
        "every",
        "from",
        "further",
        "have",
        "having",
        "here",
        "hers",
        "herself",
        "himself",
        "however",
        "into",
        "itself",
        "just",
        "more",
        "most",
        "much",
        "must",
        "neither",
        "only",
        "other",
        "ours",
        "ourselves",
        "over",
        "same",
        "shall",
        "should",
        "since",
        "some",
        "such",
        "than",
        "that",
        "their",
        "theirs",
        "them",
        "themselves",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "thus",
        "under",
        "until",
        "upon",
        "very",
        "want",
        "well",
        "were",
        "what",
        "when",
        "where",
        "whether",
        "which",
        "while",
        "whom",
        "whose",
        "will",
        "with",
        "within",
        "without",
        "would",
        "your",
        "yours",
        "yourself",
    ]
)


# --------------------------------------------------------------------------------------------
# Sources: lists of documents, each a list of words
# --------------------------------------------------------------------------------------------


def _words(text: str) -> tuple[str, ...]:
    """The whitespace-separated words of ``text`` (whitespace runs collapse)."""
    return tuple(text.split())


@functools.lru_cache(maxsize=1)
def _pydoc_documents() -> tuple[tuple[str, ...], ...]:
    from pydoc_data.topics import topics

    return tuple(_words(topics[name]) for name in sorted(topics))


def _stdlib_files(root: Path) -> list[Path]:
    """Every ``*.py`` file under ``root`` outside the skipped folders, in a fixed order."""
    found: list[Path] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIPPED_DIRS and not d.startswith("."))
        found.extend(Path(folder) / name for name in sorted(files) if name.endswith(".py"))
    return found


def _docstrings(source: bytes) -> list[str]:
    """The module, class and function docstrings of one file, in source order."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):  # a file for another Python version, or bad bytes
        return []
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, _DOCSTRING_NODES):
            text = ast.get_docstring(node, clean=True)
            if text:
                found.append((getattr(node, "lineno", 0), text))
    found.sort(key=lambda item: item[0])  # ast.walk is breadth-first; restore source order
    return [text for _, text in found]


@functools.lru_cache(maxsize=1)
def _stdlib_documents() -> tuple[tuple[str, ...], ...]:
    root = Path(sysconfig.get_paths()["stdlib"])
    documents = []
    for path in _stdlib_files(root):
        try:
            source = path.read_bytes()
        except OSError:
            continue
        words = _words(" ".join(_docstrings(source)))
        if words:
            documents.append(words)
    return tuple(documents)


_LOADERS = {"pydoc": _pydoc_documents, "stdlib": _stdlib_documents}


# --------------------------------------------------------------------------------------------
# Windows
# --------------------------------------------------------------------------------------------


def _windows(documents: Sequence[Sequence[str]], offset: int, words: int) -> list[str]:
    """Windows of ``words`` words starting at ``offset``, ``offset + words``, … in every document.

    The last window of a document may be shorter; it is kept when it has at least ``words // 2``
    words (at least 1).
    """
    shortest = max(1, words // 2)
    passages: list[str] = []
    for document in documents:
        for start in range(offset, len(document), words):
            window = document[start : start + words]
            if len(window) >= shortest:
                passages.append(" ".join(window))
    return passages


def _spread_offsets(words: int) -> list[int]:
    """``0, words/2, words/4, 3·words/4, words/8, …`` (rounded down, repeats skipped).

    The van der Corput order: each new offset falls in the middle of the widest gap left, so
    the windows added pass by pass stay as evenly spread as possible. Ends with every offset in
    ``[0, words)``.
    """
    offsets: list[int] = []
    seen: set[int] = set()
    denominator = 1
    while len(offsets) < words:
        for numerator in range(1, denominator, 2) if denominator > 1 else (0,):
            offset = numerator * words // denominator
            if offset not in seen:
                seen.add(offset)
                offsets.append(offset)
        denominator *= 2
    return offsets


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def offline_corpus(
    min_passages: int = 50_000,
    *,
    words: int = 100,
    stride: int | None = None,
    seed: int = 0,
    sources: Sequence[str] = SOURCES,
) -> tuple[list[str], list[str]]:
    """At least ``min_passages`` English passages of about ``words`` words, with no network.

    Pass 0 cuts every document (see the module docstring) into consecutive windows of ``words``
    words (a document's last window is kept if it has at least ``words // 2`` words). If that
    gives fewer than ``min_passages`` distinct passages, further passes cut the same documents
    into windows starting ``offset`` words later, overlapping the earlier ones, until there are
    enough: with ``stride`` the offsets are ``stride, 2·stride, …`` (below ``words``); without,
    they are ``words/2, words/4, 3·words/4, words/8, …`` (rounded down), so the windows stay
    evenly spread. Every pass is complete, so the result may exceed ``min_passages``; slice it
    for an exact size. Exact duplicate passages are dropped (the first is kept), then the list
    is shuffled with ``seed`` and the ids ``"p0"``, ``"p1"``, … are given in the shuffled order.

    With the default sources one pass gives about 2.8k passages of 100 words (about 285k words
    in all); 50k passages need about 18 passes.

    Args:
        min_passages (int): the fewest passages wanted, >= 1. Default: 50000
        words (int): words per passage window, >= 1. Default: 100
        stride (int | None): offset between passes in words, in ``[1, words]``; None spreads
            the offsets evenly (see above). ``stride=words`` allows a single pass. Default: None
        seed (int): the shuffle of the passage order. Default: 0
        sources (Sequence[str]): any of ``"pydoc"`` and ``"stdlib"``. Default: both

    Returns:
        tuple[list[str], list[str]]: ``(ids, texts)``, the same length, ``>= min_passages``.

    Raises:
        ValueError: on a bad argument, or if the sources cannot give ``min_passages`` distinct
            passages even with every offset the ``stride`` allows.
    """
    _check_int("min_passages", min_passages, 1)
    _check_int("words", words, 1)
    if stride is not None:
        _check_int("stride", stride, 1)
        if stride > words:
            raise ValueError(f"stride must be at most words ({words}), got {stride}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int, got {seed!r}")
    if isinstance(sources, str) or not isinstance(sources, Sequence) or not sources:
        raise ValueError(
            f"sources must be a non-empty sequence of {list(SOURCES)}, got {sources!r}"
        )
    unknown = [name for name in sources if name not in _LOADERS]
    if unknown:
        raise ValueError(f"sources must be among {list(SOURCES)}, got unknown {unknown}")

    documents = [doc for name in dict.fromkeys(sources) for doc in _LOADERS[name]()]
    offsets = _spread_offsets(words) if stride is None else list(range(0, words, stride))
    # Upper bound on what all offsets can give (each word starts at most one window per offset
    # that can still hold words // 2 words): refuse hopeless requests before cutting anything.
    shortest = max(1, words // 2)
    bound = sum(
        -(-max(0, len(doc) - shortest + 1 - offset) // words)
        for doc in documents
        for offset in offsets
    )
    if bound < min_passages:
        raise ValueError(
            f"min_passages={min_passages} cannot be reached: sources {list(sources)} give at most "
            f"{bound} passages of {words} words with stride {stride}; lower min_passages or words"
            + ("" if stride in (None, 1) else ", or use a smaller stride")
        )
    passages: dict[str, None] = {}  # insertion-ordered set: drops exact duplicates
    for offset in offsets:
        passages.update(dict.fromkeys(_windows(documents, offset, words)))
        if len(passages) >= min_passages:
            break
    else:
        raise ValueError(
            f"min_passages={min_passages} cannot be reached: sources {list(sources)} give "
            f"{len(passages)} distinct passages of {words} words with stride {stride}; lower "
            "min_passages or words"
        )
    texts = list(passages)
    random.Random(seed).shuffle(texts)
    return [f"p{i}" for i in range(len(texts))], texts


# --------------------------------------------------------------------------------------------
# Queries
# --------------------------------------------------------------------------------------------


def corpus_queries(
    ids: Sequence[str],
    texts: Sequence[str],
    n: int,
    *,
    seed: int = 0,
    min_words: int = 2,
    max_words: int = 5,
) -> tuple[list[str], list[str]]:
    """``n`` short keyword queries, each made of content words of one random passage.

    Passages are visited in a seeded random order (each at most once); from a passage, its
    distinct *content words* (runs of 4 or more ASCII letters, lower-cased, not a common
    function word) are collected and ``min_words`` to ``max_words`` of them (a uniform count)
    are sampled and joined in the order they occur. Passages with fewer than ``min_words``
    content words are skipped. Such queries are what latency needs — a few tokens of real
    vocabulary that match real passages — not relevance-judged questions.

    Args:
        ids (Sequence[str]): the passage ids.
        texts (Sequence[str]): the passages, one per id.
        n (int): queries wanted, >= 1.
        seed (int): the sampling seed. Default: 0
        min_words (int): fewest words per query, >= 1. Default: 2
        max_words (int): most words per query, >= min_words. Default: 5

    Returns:
        tuple[list[str], list[str]]: ``(source_ids, queries)``: query ``i`` was drawn from
        passage ``source_ids[i]``; the source ids are distinct.

    Raises:
        ValueError: on a bad argument, or if fewer than ``n`` passages have ``min_words``
            content words.
    """
    if isinstance(texts, (str, bytes)) or not isinstance(texts, Sequence):
        raise ValueError(f"texts must be a sequence of strings, got {type(texts).__name__}")
    if isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence) or len(ids) != len(texts):
        raise ValueError(f"ids must be a sequence with one id per text ({len(texts)})")
    _check_int("n", n, 1)
    _check_int("min_words", min_words, 1)
    _check_int("max_words", max_words, min_words)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int, got {seed!r}")
    rng = random.Random(seed)
    order = list(range(len(texts)))
    rng.shuffle(order)
    sources: list[str] = []
    queries: list[str] = []
    for position in order:
        content = list(
            dict.fromkeys(
                w
                for w in (m.lower() for m in _WORD.findall(texts[position]))
                if w not in _STOPWORDS
            )
        )
        if len(content) < min_words:
            continue
        count = min(len(content), rng.randint(min_words, max_words))
        chosen = sorted(rng.sample(range(len(content)), count))
        sources.append(ids[position])
        queries.append(" ".join(content[i] for i in chosen))
        if len(queries) == n:
            return sources, queries
    raise ValueError(
        f"n={n} queries need {n} passages with at least {min_words} content words, but only "
        f"{len(queries)} of the {len(texts)} passages have them"
    )
