"""The on-disk layout of a LongEmbed task (BEIR/mteb JSONL) and the real-task loaders.

A task directory (:func:`write_task` / :func:`load_task`)::

    task.json            {"format": "papercraft.longembed.task", "format_version": 1, ...}
    corpus.jsonl         {"_id", "title", "text", "context_length"}   one document a line
    queries.jsonl        {"_id", "text", "context_length"}            one query a line
    qrels/<split>.tsv    "query-id\\tcorpus-id\\tscore" with a header line, one file per split

A split with a context length holds the documents whose ``context_length`` equals it, a split
without one (a real task's ``test``) every document; a split's queries are those of its qrels file.
``task.json`` carries the format version and a sha256 and size per file; loading checks both.
:func:`load_real_task` reads LongEmbed's four real tasks from local files in the same shape.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from papercraft.core.io import (
    CheckpointError,
    ChecksumError,
    FormatVersionError,
    StrPath,
    atomic_directory,
    atomic_write_json,
    atomic_write_text,
)
from papercraft.longembed.tasks import (
    FORMAT,
    FORMAT_VERSION,
    REAL_TASKS,
    RetrievalTask,
    TaskSplit,
)

__all__ = ["load_real_task", "load_task", "write_task"]


# --------------------------------------------------------------------------------------------
# On-disk schema
# --------------------------------------------------------------------------------------------


def _jsonl(rows: Iterator[dict[str, Any]]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def _row_lengths(task: RetrievalTask) -> tuple[dict[str, int | None], dict[str, int | None]]:
    """Each document's and query's context length; checks the task fits the on-disk layout."""
    doc_length: dict[str, int | None] = {}
    query_length: dict[str, int | None] = {}
    if len(task.splits) > 1 and any(s.context_length is None for s in task.splits.values()):
        raise ValueError(
            f"task {task.name!r}: only a single split may lack a context_length on disk "
            "(splits are stored by the rows' context_length)"
        )
    lengths = [s.context_length for s in task.splits.values()]
    if len(set(lengths)) != len(lengths):
        raise ValueError(f"task {task.name!r}: two splits share a context_length")
    for split in task.splits.values():
        for ids, table, kind in (
            (split.corpus_ids, doc_length, "document"),
            (split.query_ids, query_length, "query"),
        ):
            for item in ids:
                if item in table:
                    raise ValueError(
                        f"task {task.name!r}: {kind} {item!r} is in two splits; on disk every "
                        "row belongs to one split"
                    )
                table[item] = split.context_length
    outside = [doc_id for doc_id in task.corpus if doc_id not in doc_length]
    if outside:
        raise ValueError(
            f"task {task.name!r}: document {outside[0]!r} is in no split; on disk every "
            "document belongs to one split"
        )
    for query_id in task.queries:  # unjudged queries are kept, in no split
        query_length.setdefault(query_id, None)
    return doc_length, query_length


def write_task(task: RetrievalTask, directory: StrPath) -> Path:
    """Write ``task`` atomically as a BEIR/mteb directory with a ``task.json`` manifest.

    Rows are written split by split in each split's order, so :func:`load_task` gives back an
    equal task; the same task always gives byte-identical files.

    Args:
        task (RetrievalTask): the task; every document and query must belong to exactly one split.
        directory (str | os.PathLike[str]): the directory to create or replace.

    Returns:
        Path: ``directory``.

    Raises:
        ValueError: if the task is not a RetrievalTask or cannot be stored in this layout.
    """
    if not isinstance(task, RetrievalTask):
        raise ValueError(f"task must be a RetrievalTask, got {type(task).__name__}")
    doc_length, query_length = _row_lengths(task)

    def extra(length: int | None) -> dict[str, int]:
        return {} if length is None else {"context_length": length}

    corpus_rows = (
        {"_id": d, "title": task.corpus[d].get("title", ""), "text": task.corpus[d]["text"]}
        | extra(doc_length[d])
        for split in task.splits.values()
        for d in split.corpus_ids
    )
    in_splits = [q for split in task.splits.values() for q in split.query_ids]
    outside = [q for q in task.queries if q not in set(in_splits)]
    query_rows = (
        {"_id": q, "text": task.queries[q]} | extra(query_length[q]) for q in in_splits + outside
    )
    files = {"corpus.jsonl": _jsonl(corpus_rows), "queries.jsonl": _jsonl(query_rows)}
    for split_name, split in task.splits.items():
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", split_name):
            raise ValueError(f"split names must be plain file names, got {split_name!r}")
        lines = ["query-id\tcorpus-id\tscore"]
        for q in split.query_ids:
            lines += [f"{q}\t{d}\t{rel}" for d, rel in task.qrels.get(q, {}).items()]
        files[f"qrels/{split_name}.tsv"] = "\n".join(lines) + "\n"
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": task.name,
        "main_metric": task.main_metric,
        "lengths": list(task.lengths),
        "seed": task.metadata.get("seed"),
        "counts": task.counts(),
        "splits": {
            name: {
                "context_length": split.context_length,
                "num_queries": len(split.query_ids),
                "num_documents": len(split.corpus_ids),
            }
            for name, split in task.splits.items()
        },
        "metadata": task.metadata,
        "files": {
            name: {
                "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
                "bytes": len(text.encode("utf-8")),
            }
            for name, text in files.items()
        },
    }
    with atomic_directory(directory) as tmp:
        for name, text in files.items():
            atomic_write_text(tmp / name, text)
        atomic_write_json(tmp / "task.json", manifest)
    return Path(directory)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise CheckpointError(f"missing file {path}")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise CheckpointError(f"{path}, line {number}: not valid JSON ({error})") from error
        if not isinstance(row, dict):
            raise CheckpointError(f"{path}, line {number}: expected a JSON object, got {row!r:.60}")
        rows.append(row)
    return rows


def _field(row: dict[str, Any], names: Sequence[str], path: Path, number: int) -> str:
    for name in names:
        if name in row:
            value = row[name]
            if isinstance(value, (str, int)) and not isinstance(value, bool):
                return str(value)
            raise CheckpointError(f"{path}, row {number}: field {name!r} must be a string")
    raise CheckpointError(f"{path}, row {number}: needs one of the fields {list(names)}")


def _read_qrels_tsv(path: Path) -> list[tuple[str, str, int]]:
    if not path.is_file():
        raise CheckpointError(f"missing file {path}")
    pairs = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        cells = line.split("\t")
        if number == 1 and cells[0] in ("query-id", "query_id", "qid"):
            continue  # the header
        if not line.strip():
            continue
        if len(cells) != 3 or not re.fullmatch(r"-?[0-9]+", cells[2].strip()):
            raise CheckpointError(
                f"{path}, line {number}: expected 'query-id<TAB>corpus-id<TAB>integer score', "
                f"got {line!r:.80}"
            )
        pairs.append((cells[0], cells[1], int(cells[2])))
    return pairs


def load_task(directory: StrPath, *, verify: bool = True) -> RetrievalTask:
    """Read a task written by :func:`write_task`.

    Args:
        directory (str | os.PathLike[str]): the task directory.
        verify (bool): check each file's size and SHA-256 against ``task.json``. Default: True

    Returns:
        RetrievalTask: the task.

    Raises:
        CheckpointError: (a ValueError) if the directory, ``task.json`` or a file is missing or
            malformed, or the rows do not match the manifest.
        FormatVersionError: if the task was written by a newer format version.
        ChecksumError: if a file was modified or truncated (with ``verify``).
    """
    root = Path(directory)
    manifest_path = root / "task.json"
    if not manifest_path.is_file():
        raise CheckpointError(
            f"{root} has no task.json: not a task directory written by write_task"
        )
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{manifest_path} is not valid JSON: {error}") from error
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{manifest_path} is not a {FORMAT!r} manifest")
    version = manifest.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{manifest_path}: format_version must be an int >= 1")
    if version > FORMAT_VERSION:
        raise FormatVersionError(
            f"{root} has task format_version {version}; this papercraft-longembed reads up to "
            f"{FORMAT_VERSION}: upgrade it to load the task"
        )
    for key in ("name", "main_metric", "splits", "files"):
        if key not in manifest:
            raise CheckpointError(f"{manifest_path} lacks the field {key!r}")
    for name, entry in manifest["files"].items():
        path = root / name
        if not path.is_file():
            raise CheckpointError(f"{root} is incomplete: {name} is missing")
        if verify:
            data = path.read_bytes()
            if len(data) != entry["bytes"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
                raise ChecksumError(f"{path} differs from task.json (modified or truncated)")
    corpus: dict[str, dict[str, str]] = {}
    queries: dict[str, str] = {}
    doc_by_length: dict[int | None, list[str]] = {}
    query_by_length: dict[int | None, list[str]] = {}
    for number, row in enumerate(_read_jsonl(root / "corpus.jsonl"), start=1):
        doc_id = _field(row, ("_id",), root / "corpus.jsonl", number)
        text = _field(row, ("text",), root / "corpus.jsonl", number)
        corpus[doc_id] = {"title": str(row.get("title", "")), "text": text}
        doc_by_length.setdefault(row.get("context_length"), []).append(doc_id)
    for number, row in enumerate(_read_jsonl(root / "queries.jsonl"), start=1):
        query_id = _field(row, ("_id",), root / "queries.jsonl", number)
        queries[query_id] = _field(row, ("text",), root / "queries.jsonl", number)
        query_by_length.setdefault(row.get("context_length"), []).append(query_id)
    qrels: dict[str, dict[str, int]] = {}
    splits: dict[str, TaskSplit] = {}
    for split_name, info in manifest["splits"].items():
        judged = set()
        for q, d, rel in _read_qrels_tsv(root / "qrels" / f"{split_name}.tsv"):
            qrels.setdefault(q, {})[d] = rel
            judged.add(q)
        length = info.get("context_length")
        split = TaskSplit(
            tuple(q for q in query_by_length.get(length, []) if q in judged),
            tuple(corpus) if length is None else tuple(doc_by_length.get(length, [])),
            length,
        )
        if (len(split.query_ids), len(split.corpus_ids)) != (
            info.get("num_queries"),
            info.get("num_documents"),
        ):
            raise CheckpointError(
                f"{root}: split {split_name!r} has {len(split.query_ids)} queries and "
                f"{len(split.corpus_ids)} documents, task.json records "
                f"{info.get('num_queries')} and {info.get('num_documents')}"
            )
        splits[split_name] = split
    try:
        return RetrievalTask(
            name=manifest["name"],
            corpus=corpus,
            queries=queries,
            qrels=qrels,
            splits=splits,
            main_metric=manifest["main_metric"],
            metadata=dict(manifest.get("metadata", {})),
        )
    except ValueError as error:
        raise CheckpointError(f"{root} holds an inconsistent task: {error}") from error


def _real_task_name(name: str) -> str:
    key = re.sub(r"[^a-z0-9]", "", str(name).lower())
    for canonical, mteb_name in REAL_TASKS.items():
        mteb_key = mteb_name.lower().removeprefix("lemb").removesuffix("retrieval")
        if key in (re.sub(r"[^a-z0-9]", "", canonical), mteb_name.lower(), mteb_key):
            return canonical
    if key in ("wikimqa", "2wikimultihopqa"):
        return "2wikimqa"
    raise ValueError(
        f"name must be one of the real LongEmbed tasks {sorted(REAL_TASKS)} (or their mteb "
        f"names), got {name!r}"
    )


def load_real_task(name: str, directory: StrPath) -> RetrievalTask:
    """Load one of LongEmbed's real tasks from local files (one ``test`` split, nDCG@10).

    Accepts LongEmbed's Hugging Face layout (``corpus.jsonl`` with ``doc_id``/``text``,
    ``queries.jsonl`` with ``qid``/``text``, ``qrels.jsonl`` with ``qid``/``doc_id`` and an
    optional ``score``, default 1) or BEIR's (``_id`` fields and ``qrels/test.tsv``), in
    ``directory`` itself or in its sub-directory named after the task (``directory/qmsum``).
    Queries without a relevant document are kept in ``queries`` but left out of the split, as
    mteb does.

    Args:
        name (str): ``"narrativeqa"``, ``"qmsum"``, ``"2wikimqa"`` (``"wikimqa"``),
            ``"summ_screen_fd"``, or an mteb name such as ``"LEMBQMSumRetrieval"``.
        directory (str | os.PathLike[str]): where the files are.

    Returns:
        RetrievalTask: the task, named by its canonical name.

    Raises:
        ValueError: for an unknown task name.
        CheckpointError: (a ValueError) for missing or malformed files.
    """
    canonical = _real_task_name(name)
    root = Path(directory)
    if not (root / "corpus.jsonl").is_file() and (root / canonical / "corpus.jsonl").is_file():
        root = root / canonical
    if not (root / "corpus.jsonl").is_file():
        raise CheckpointError(
            f"no corpus.jsonl for task {canonical!r} in {Path(directory)} (nor in its "
            f"sub-directory {canonical!r})"
        )
    corpus: dict[str, dict[str, str]] = {}
    for number, row in enumerate(_read_jsonl(root / "corpus.jsonl"), start=1):
        doc_id = _field(row, ("doc_id", "_id"), root / "corpus.jsonl", number)
        text = _field(row, ("text",), root / "corpus.jsonl", number)
        corpus[doc_id] = {"title": str(row.get("title", "") or ""), "text": text}
    queries: dict[str, str] = {}
    for number, row in enumerate(_read_jsonl(root / "queries.jsonl"), start=1):
        query_id = _field(row, ("qid", "_id"), root / "queries.jsonl", number)
        queries[query_id] = _field(row, ("text",), root / "queries.jsonl", number)
    if (root / "qrels.jsonl").is_file():
        triples = []
        for number, row in enumerate(_read_jsonl(root / "qrels.jsonl"), start=1):
            q = _field(row, ("qid", "query-id", "query_id"), root / "qrels.jsonl", number)
            d = _field(row, ("doc_id", "corpus-id", "corpus_id"), root / "qrels.jsonl", number)
            score = row.get("score", 1)
            if isinstance(score, bool) or not isinstance(score, int):
                raise CheckpointError(f"{root / 'qrels.jsonl'}, row {number}: score must be an int")
            triples.append((q, d, score))
    else:
        triples = _read_qrels_tsv(root / "qrels" / "test.tsv")
    qrels: dict[str, dict[str, int]] = {}
    for q, d, rel in triples:
        if q not in queries or d not in corpus:
            raise CheckpointError(
                f"{root}: a qrel names {'query ' + repr(q) if q not in queries else 'document ' + repr(d)}, "
                "which is not in the queries/corpus files"
            )
        qrels.setdefault(q, {})[d] = rel
    judged = tuple(q for q in queries if any(rel > 0 for rel in qrels.get(q, {}).values()))
    if not judged:
        raise CheckpointError(f"{root}: no query has a relevant document")
    split = TaskSplit(judged, tuple(corpus))
    metadata = {"mteb_name": REAL_TASKS[canonical], "source": str(root)}
    return RetrievalTask(canonical, corpus, queries, qrels, {"test": split}, "ndcg_at_10", metadata)
