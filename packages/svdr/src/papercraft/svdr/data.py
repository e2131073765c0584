"""Training and evaluation data readers: DPR-format training JSON and BEIR-format folders.

- DPR (``biencoder-nq-train.json`` and friends): a JSON list of
  ``{"question", "answers", "positive_ctxs": [{"title", "text", "passage_id"?}], "hard_negative_ctxs":
  [...], "negative_ctxs": [...]}``. :func:`read_dpr` keeps the examples with at least one positive
  (as DPR's training does) and says how many it dropped.
- BEIR: ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl`` (``_id``, ``text``)
  and ``qrels/<split>.tsv`` (``query-id  corpus-id  score``, header line). :func:`read_beir` returns
  the three mappings, the queries limited to those with judgements in the split.

Both raise a ``ValueError`` naming the file and line on malformed input. :func:`write_beir` writes
a folder :func:`read_beir` reads (atomically), and :func:`passage_text` is the one way a passage's
title and text become the string that the index, the encoder and the baselines all see.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from papercraft.core.data import read_jsonl, write_jsonl
from papercraft.core.io import atomic_directory

__all__ = [
    "BeirData",
    "DprExample",
    "Passage",
    "passage_text",
    "read_beir",
    "read_corpus",
    "read_dpr",
    "write_beir",
    "write_dpr",
]


def passage_text(title: str, text: str) -> str:
    """A passage as one string: ``"{title} {text}"`` (just ``text`` without a title).

    The official code feeds the title as the first segment of a text pair; joining them keeps one
    string for the bag-of-tokens index, the encoder and the baselines (the token set is the same).
    """
    title = title.strip()
    return f"{title} {text}" if title else text


@dataclass(frozen=True)
class Passage:
    """A passage: its text, title and (optional) id."""

    text: str
    title: str = ""
    passage_id: str | None = None


@dataclass(frozen=True)
class DprExample:
    """One DPR training example."""

    question: str
    positives: tuple[Passage, ...]
    hard_negatives: tuple[Passage, ...] = ()
    negatives: tuple[Passage, ...] = ()
    answers: tuple[str, ...] = ()


def _passages(items: Any, where: str) -> tuple[Passage, ...]:
    if items is None:
        return ()
    if not isinstance(items, list):
        raise ValueError(f"{where}: expected a list of passages, got {type(items).__name__}")
    out = []
    for j, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("text"), str):
            raise ValueError(f"{where}[{j}]: a passage needs a 'text' string, got {item!r:.80}")
        pid = item.get("passage_id", item.get("psg_id"))
        out.append(
            Passage(item["text"], str(item.get("title") or ""), None if pid is None else str(pid))
        )
    return tuple(out)


def read_dpr(path: str | os.PathLike[str]) -> tuple[list[DprExample], int]:
    """Read a DPR-format training file.

    Args:
        path (str | os.PathLike): the ``.json`` file (a list of examples).

    Returns:
        tuple[list[DprExample], int]: the examples with a positive, and how many had none.
    """
    file = Path(path)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{file}: not valid JSON ({error})") from error
    if not isinstance(data, list):
        raise ValueError(f"{file}: expected a JSON list of examples, got {type(data).__name__}")
    examples, dropped = [], 0
    for i, row in enumerate(data):
        where = f"{file}: example {i}"
        if not isinstance(row, dict) or not isinstance(row.get("question"), str):
            raise ValueError(f"{where}: needs a 'question' string")
        positives = _passages(row.get("positive_ctxs"), f"{where}.positive_ctxs")
        if not positives:
            dropped += 1
            continue
        examples.append(
            DprExample(
                question=row["question"],
                positives=positives,
                hard_negatives=_passages(
                    row.get("hard_negative_ctxs"), f"{where}.hard_negative_ctxs"
                ),
                negatives=_passages(row.get("negative_ctxs"), f"{where}.negative_ctxs"),
                answers=tuple(str(a) for a in row.get("answers") or ()),
            )
        )
    return examples, dropped


@dataclass
class BeirData:
    """A BEIR split: corpus id -> {title, text}, query id -> text, query id -> {doc id: grade}."""

    corpus: dict[str, dict[str, str]]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


def _text_field(row: Any, key: str, where: str) -> str:
    value = row.get(key) if isinstance(row, dict) else None
    if not isinstance(value, str):
        raise ValueError(f"{where}: needs a '{key}' string, got {row!r:.80}")
    return value


def read_beir(directory: str | os.PathLike[str], split: str = "test") -> BeirData:
    """Read a BEIR folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``)."""
    root = Path(directory)
    for name in ("corpus.jsonl", "queries.jsonl", f"qrels/{split}.tsv"):
        if not (root / name).is_file():
            raise FileNotFoundError(f"{root} is not a BEIR folder for split {split!r}: no {name}")
    corpus: dict[str, dict[str, str]] = {}
    for n, row in enumerate(read_jsonl(root / "corpus.jsonl"), start=1):
        where = f"{root / 'corpus.jsonl'}, line {n}"
        doc_id = str(_text_field(row, "_id", where))
        if doc_id in corpus:
            raise ValueError(f"{where}: duplicate document id {doc_id!r}")
        corpus[doc_id] = {
            "title": str(row.get("title") or ""),
            "text": _text_field(row, "text", where),
        }
    queries_all: dict[str, str] = {}
    for n, row in enumerate(read_jsonl(root / "queries.jsonl"), start=1):
        where = f"{root / 'queries.jsonl'}, line {n}"
        queries_all[_text_field(row, "_id", where)] = _text_field(row, "text", where)
    qrels: dict[str, dict[str, int]] = {}
    qrels_path = root / "qrels" / f"{split}.tsv"
    for n, line in enumerate(qrels_path.read_text(encoding="utf-8").splitlines(), start=1):
        cells = line.split("\t")
        if n == 1 and cells[0] == "query-id":
            continue
        if not line.strip():
            continue
        if len(cells) != 3:
            raise ValueError(f"{qrels_path}, line {n}: expected query-id, corpus-id, score")
        query_id, doc_id, grade = cells
        try:
            qrels.setdefault(query_id, {})[doc_id] = int(grade)
        except ValueError as error:
            raise ValueError(f"{qrels_path}, line {n}: score must be an integer") from error
        if query_id not in queries_all or doc_id not in corpus:
            raise ValueError(f"{qrels_path}, line {n}: unknown query or document id")
    queries = {q: queries_all[q] for q in qrels}
    return BeirData(corpus, queries, qrels)


def write_beir(
    data: BeirData,
    directory: str | os.PathLike[str],
    split: str = "test",
    *,
    overwrite: bool = False,
) -> Path:
    """Write ``data`` as a BEIR folder (the whole folder appears at once, or not at all).

    Args:
        data (BeirData): corpus, queries and qrels.
        directory (str | os.PathLike): the folder to create.
        split (str): the qrels file name, ``qrels/<split>.tsv``. Default: "test"
        overwrite (bool): replace an existing folder. Default: False

    Returns:
        Path: the folder.
    """
    if not data.corpus:
        raise ValueError("data.corpus must not be empty")
    for query_id, judged in data.qrels.items():
        if query_id not in data.queries:
            raise ValueError(f"data.qrels names query {query_id!r}, which data.queries lacks")
        missing = [d for d in judged if d not in data.corpus]
        if missing:
            raise ValueError(
                f"data.qrels[{query_id!r}] names documents not in the corpus: {missing[:5]}"
            )
    with atomic_directory(directory, overwrite=overwrite) as tmp:
        write_jsonl(
            tmp / "corpus.jsonl",
            (
                {"_id": d, "title": row.get("title", ""), "text": row["text"]}
                for d, row in data.corpus.items()
            ),
        )
        write_jsonl(tmp / "queries.jsonl", ({"_id": q, "text": t} for q, t in data.queries.items()))
        (tmp / "qrels").mkdir()
        lines = ["query-id\tcorpus-id\tscore"]
        lines += [f"{q}\t{d}\t{g}" for q, judged in data.qrels.items() for d, g in judged.items()]
        (tmp / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return Path(directory)


def read_corpus(path: str | os.PathLike[str]) -> tuple[list[str], list[str]]:
    """Passage ids and texts (:func:`passage_text`) from a corpus file or BEIR folder.

    Accepted: a BEIR folder or its ``corpus.jsonl`` (``_id``, ``title``, ``text``); any ``.jsonl``
    with ``id``/``_id`` and ``text`` (``title`` optional); a DPR-style ``.tsv`` (``id  text
    title`` with a header line, as ``psgs_w100.tsv``).

    Args:
        path (str | os.PathLike): the file or folder.

    Returns:
        tuple[list[str], list[str]]: ids and texts, in file order.

    Raises:
        FileNotFoundError: when nothing is there.
        ValueError: on an unknown format, a malformed line, a duplicate id or an empty corpus.
    """
    source = Path(path)
    if source.is_dir():
        source = source / "corpus.jsonl"
    if not source.is_file():
        raise FileNotFoundError(f"corpus: no such file {source}")
    ids: list[str] = []
    texts: list[str] = []
    if source.suffix == ".jsonl":
        for n, row in enumerate(read_jsonl(source), start=1):
            where = f"{source}, line {n}"
            doc_id = row.get("_id", row.get("id")) if isinstance(row, dict) else None
            if doc_id is None:
                raise ValueError(f"{where}: needs an '_id' or 'id'")
            ids.append(str(doc_id))
            texts.append(passage_text(str(row.get("title") or ""), _text_field(row, "text", where)))
    elif source.suffix == ".tsv":
        lines = source.read_text(encoding="utf-8").splitlines()
        for n, line in enumerate(lines, start=1):
            cells = line.split("\t")
            if n == 1 and cells[0] == "id":
                continue
            if not line.strip():
                continue
            if len(cells) not in (2, 3):
                raise ValueError(
                    f"{source}, line {n}: expected id, text[, title] separated by tabs"
                )
            ids.append(cells[0])
            texts.append(passage_text(cells[2] if len(cells) == 3 else "", cells[1]))
    else:
        raise ValueError(f"corpus must be a BEIR folder, a .jsonl or a .tsv file, got {source}")
    if not ids:
        raise ValueError(f"corpus {source} holds no passages (empty corpus)")
    seen: set[str] = set()
    for doc_id in ids:
        if doc_id in seen:
            raise ValueError(f"corpus {source}: duplicate id {doc_id!r}")
        seen.add(doc_id)
    return ids, texts


def write_dpr(examples: list[DprExample], path: str | os.PathLike[str]) -> Path:
    """Write examples as a DPR-format training ``.json`` (atomically); :func:`read_dpr` reads it."""
    from papercraft.core.io import atomic_write_json

    def ctx(passages: tuple[Passage, ...]) -> list[dict[str, str]]:
        rows = []
        for p in passages:
            row = {"title": p.title, "text": p.text}
            if p.passage_id is not None:
                row["passage_id"] = p.passage_id
            rows.append(row)
        return rows

    data = [
        {
            "question": e.question,
            "answers": list(e.answers),
            "positive_ctxs": ctx(e.positives),
            "hard_negative_ctxs": ctx(e.hard_negatives),
            "negative_ctxs": ctx(e.negatives),
        }
        for e in examples
    ]
    return atomic_write_json(path, data)
