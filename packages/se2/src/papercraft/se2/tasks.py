"""The 23 Se² tasks: datasets, instruction templates and how a raw row becomes an example.

The facts and the template strings come from the official Se² code (microsoft/LMOps,
``se2/DPR/dpr/utils/tasks.py``) and live in ``data/templates.json``; this module turns them into
typed :class:`TaskSpec` objects and formats dataset rows exactly like the official
``get_question`` / ``get_answers`` / ``get_label`` / ``get_answer`` methods:

* the question template of a row is ``random.seed(row["id"]); random.choice(templates)``
  (seed 42 when the row has no id), done here with a private :class:`random.Random`;
* template slots are filled in order with ``str.replace``, after the per-task preprocessing
  (HellaSwag bracket removal, CommonGen concept joining, E2E meaning representations, ...);
* a demonstration is ``question + answer`` with runs of spaces collapsed
  (``remove_double_space(f"{question}{answer}")`` in ``se2/src/dataset_readers/scorer_dsr.py``
  line 101 and ``few_shot_dsr.py`` line 100) and demonstrations are joined with
  :data:`DEMO_SEPARATOR` (``" \\n "``).

Rows are read from local files, ``datasets.load_from_disk`` directories or in-memory lists; this
module never downloads anything.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

__all__ = [
    "CLUSTERS",
    "DEMO_SEPARATOR",
    "FALLBACK_SEED",
    "KINDS",
    "METRICS",
    "SHUFFLE_SEED",
    "SPLITS",
    "TASKS",
    "TRAIN_CAP",
    "DatasetSpec",
    "Example",
    "Formatter",
    "RowFilter",
    "RowSource",
    "Slot",
    "TaskSpec",
    "builtin_tasks",
    "collapse_spaces",
    "format_example",
    "get_task",
    "load_examples",
    "register_task",
    "unregister_task",
]

DEMO_SEPARATOR = " \n "
"""String between demonstrations (and before the query) in the official scorer and inference."""
TRAIN_CAP = 10_000
"""Official ``ds_size``: training rows kept per task after shuffling (``get_cmds.py --ds_size``)."""
SHUFFLE_SEED = 42
FALLBACK_SEED = 42
"""Template seed of a row without an id (the official ``random.seed(42)`` branch)."""
KINDS = ("choice", "generation")
METRICS = ("accuracy", "f1", "rouge")
SPLITS = ("train", "validation", "test")

RowFilter = Callable[[Mapping[str, Any]], bool]
RowSource = str | os.PathLike[str] | Mapping[str, Any] | Iterable[Mapping[str, Any]]
"""Rows for :func:`load_examples`: a path, a ``{split: rows}`` mapping or the rows themselves."""
"""Row predicate: ``False`` drops the row (the official ``BaseTask.filter``)."""

_SPACES = re.compile(r"[ ]{2,}")
_BRACKETS = re.compile(r"\[.*?\]\s")


def collapse_spaces(text: str) -> str:
    """Shortens runs of spaces (not other whitespace) to one: the official ``remove_double_space``."""
    return _SPACES.sub(" ", text)


def _join_comma(value: Any) -> str:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValueError(f"entry: expected a list of strings to join, got {type(value).__name__}")
    return ", ".join(str(v) for v in value)


_TRANSFORMS: dict[str, Callable[[Any], str]] = {
    # hellaswag: ``re.sub(r"\[.*?\]\s", "", ctx)`` removes ``[header] ``-style markers
    "strip_brackets": lambda v: _BRACKETS.sub("", _as_str(v)),
    "join_comma": _join_comma,  # common_gen: ", ".join(concepts)
    # e2e_nlg: ``name[The Eagle]`` -> ``name = The Eagle``
    "e2e_meaning_representation": lambda v: _as_str(v).replace("[", " = ").replace("]", ""),
    "newline_to_space": lambda v: _as_str(v).replace("\n", " "),  # aeslc email body
    "drop_newlines": lambda v: _as_str(v).replace("\n", ""),  # aeslc subject line
    "qqp_quotes": lambda v: _as_str(v).replace('""', "'"),  # qqp questions
}


def _as_str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"entry: expected a string field, got {type(value).__name__}")
    return value


def _aeslc_length(row: Mapping[str, Any]) -> bool:
    body = len(str(row["email_body"]).replace("\n", " ").split())
    subject = len(str(row["subject_line"]).replace("\n", " ").split())
    return 0 < body <= 256 and 0 < subject <= 256


_FILTERS: dict[str, RowFilter] = {
    "label_nonnegative": lambda r: int(r["label"]) >= 0,  # snli: drop label -1
    "four_choices": lambda r: len(r["choices"]["text"]) == 4,  # arc: exactly 4 options
    "binary_sentiment": lambda r: int(r["sentiment"]) in (0, 4),  # sentiment140: no neutral
    "aeslc_length": _aeslc_length,  # 1..256 words in body and subject
    "gigaword_clean": lambda r: not any(s in r["document"] + r["summary"] for s in ("UNK", "#")),
}


@dataclass(frozen=True)
class DatasetSpec:
    """Where the official code loads a task from (``datasets.load_dataset(path, name)``).

    Attributes:
        path: Hub dataset path.
        name: Config name, or ``None``.
        train_split: Split of the prompt pool / training rows.
        test_split: Split evaluated by the official code.
        train_name: Config of the training rows when it differs from ``name`` (mnli_m and
            mnli_mm evaluate on ``glue/mnli_matched`` but train on ``glue/mnli``).
    """

    path: str
    name: str | None
    train_split: str | None
    test_split: str
    train_name: str | None = None


@dataclass(frozen=True)
class Slot:
    """Template placeholder replaced by ``transform(row[source])`` (``source`` may be dotted)."""

    placeholder: str
    source: str
    transform: str | None = None


@dataclass(frozen=True)
class TaskSpec:
    """Everything needed to build examples of one task.

    Attributes:
        name: Task name (``"mnli_m"``).
        cluster: Official task cluster attribute (``"nli"``, ``"sentiment"``, ...).
        kind: ``"choice"`` (scored options) or ``"generation"`` (free text, class_num 1).
        metric: ``"accuracy"``, ``"f1"`` or ``"rouge"``.
        templates: ``(question_template, answer_template)`` pairs, verbatim from the official code.
        slots: Placeholders of the question templates, filled in this order.
        dataset: Official Hub source, or ``None`` for custom tasks.
        train_task: Task whose training rows form the prompt pool (``"mnli"`` for mnli_m/mm).
        official_metric: Metric name in ``se2/src/utils/metric.py``.
        finder_L: Candidates sampled per query when scoring (official default 50).
        class_num: Number of options (1 for generation tasks, as in the official code).
        balance_class: Whether training rows are sampled evenly from each class.
        options: Fixed option strings (with their leading space), or ``None`` when each row
            carries its own options.
        option_fields: Row fields holding the options: one list-valued field or several
            scalar fields; each option gets one leading space.
        option_transform: Transform applied to each row option.
        label_field: Row field holding the gold label.
        label_map: Raw label (``str(int(raw))`` for numbers) -> option index; ``None`` means
            ``int(raw)``.
        label_default: Index for raw labels missing from ``label_map``.
        answer_field: Row field holding the gold text of a generation task.
        answer_prefix: Prepended to the gold text (``" "``, or ``""`` for roc_story/roc_ending).
        answer_transform: Transform applied to the gold text.
        filter: Name of a built-in row filter, or ``None``.
        scorer_batch_size: Official ``run_scorer_bsz``.
        learning_rate: Official retriever learning rate.
    """

    name: str
    cluster: str
    kind: str
    metric: str
    templates: tuple[tuple[str, str], ...]
    slots: tuple[Slot, ...] = ()
    dataset: DatasetSpec | None = None
    train_task: str | None = None
    official_metric: str | None = None
    finder_L: int = 50
    class_num: int = 1
    balance_class: bool = False
    options: tuple[str, ...] | None = None
    option_fields: tuple[str, ...] = ()
    option_transform: str | None = None
    label_field: str | None = None
    label_map: Mapping[str, int] | None = field(default=None, hash=False)
    label_default: int | None = None
    answer_field: str | None = None
    answer_prefix: str = " "
    answer_transform: str | None = None
    filter: str | None = None
    scorer_batch_size: int = 5
    learning_rate: float = 1e-5

    def __post_init__(self) -> None:
        def fix(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty string, got {self.name!r}")
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {self.metric!r}")
        pairs = tuple(tuple(p) for p in self.templates)
        if not pairs or any(len(p) != 2 or not all(isinstance(s, str) for s in p) for p in pairs):
            raise ValueError(
                f"templates of {self.name!r} must be non-empty (question, answer) pairs"
            )
        fix("templates", pairs)
        fix("slots", tuple(s if isinstance(s, Slot) else Slot(**s) for s in self.slots))
        for name in (s.transform for s in self.slots):
            _check_transform(name, "slots")
        _check_transform(self.option_transform, "option_transform")
        _check_transform(self.answer_transform, "answer_transform")
        for attr in ("finder_L", "class_num", "scorer_batch_size"):
            value = getattr(self, attr)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{attr} must be a positive int, got {value!r}")
        if self.balance_class and self.kind != "choice":
            raise ValueError("balance_class needs kind='choice'")
        if self.options is not None:
            fix("options", tuple(self.options))
            if self.kind == "choice" and len(self.options) != self.class_num:
                raise ValueError(
                    f"options has {len(self.options)} entries, class_num is {self.class_num}"
                )
        fix("option_fields", tuple(self.option_fields or ()))
        if self.label_map is not None:
            fix("label_map", MappingProxyType({str(k): int(v) for k, v in self.label_map.items()}))
        if self.train_task is None:
            fix("train_task", self.name)

    @property
    def num_templates(self) -> int:
        """Number of instruction templates."""
        return len(self.templates)

    @classmethod
    def from_dict(cls, name: str, data: Mapping[str, Any]) -> TaskSpec:
        """Builds a spec from a ``templates.json`` entry (keys: the fields except ``name``).

        Raises:
            ValueError: If ``data`` has unknown keys or bad values.
        """
        known = set(cls.__dataclass_fields__) - {"name"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"data for task {name!r} has unknown keys {unknown}")
        kwargs = dict(data)
        if kwargs.get("dataset") is not None:
            kwargs["dataset"] = DatasetSpec(**kwargs["dataset"])
        return cls(name=name, **kwargs)


Formatter = Callable[
    [TaskSpec, Mapping[str, Any], str], tuple[str, str, tuple[str, ...], int | None]
]
"""Custom formatter: ``(spec, row, question_template) -> (question, answer, options, label)``."""


def _check_transform(name: str | None, argname: str) -> None:
    if name is not None and name not in _TRANSFORMS:
        raise ValueError(f"{argname}: unknown transform {name!r}; known: {sorted(_TRANSFORMS)}")


@dataclass(frozen=True)
class Example:
    """One formatted row.

    Attributes:
        id: The template seed of the row as a string (its ``id``, else the index it was given,
            else ``"42"``).
        question: The filled question template (the official ``get_question``), uncollapsed.
        answer: Gold answer text as it follows the question (the official ``get_answer``,
            e.g. ``" Yes"``).
        options: Every option string of a choice task; empty for generation tasks.
        label: Index of the gold option (choice tasks), else ``None``.
        task: Task name.
        template: Index of the chosen template in ``TaskSpec.templates``.
    """

    id: str
    question: str
    answer: str
    options: tuple[str, ...]
    label: int | None
    task: str
    template: int

    @property
    def text(self) -> str:
        """The example as a demonstration: ``collapse_spaces(question + answer)``.

        The official scorer and inference build each demonstration as
        ``remove_double_space(f"{question}{answer}")`` (no separator: answers start with a space,
        or the template ends with one) and join demonstrations with :data:`DEMO_SEPARATOR`.
        """
        return collapse_spaces(self.question + self.answer)


@cache
def builtin_tasks() -> Mapping[str, TaskSpec]:
    """The 23 official specs read (once) from the packaged ``data/templates.json``, read-only."""
    text = resources.files("papercraft.se2").joinpath("data/templates.json").read_text("utf-8")
    raw = json.loads(text)["tasks"]
    return MappingProxyType({name: TaskSpec.from_dict(name, entry) for name, entry in raw.items()})


def _clusters(tasks: Mapping[str, TaskSpec]) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for spec in tasks.values():
        out[spec.cluster] = (*out.get(spec.cluster, ()), spec.name)
    return out


TASKS: dict[str, TaskSpec] = dict(builtin_tasks())
"""Every registered task by name (the 23 official tasks plus :func:`register_task` additions)."""
CLUSTERS: dict[str, tuple[str, ...]] = _clusters(TASKS)
"""Cluster name -> task names, e.g. ``CLUSTERS["nli"] == ("mnli_m", "mnli_mm", ...)``."""
_FORMATTERS: dict[str, Formatter] = {}
_ROW_FILTERS: dict[str, RowFilter] = {}


def get_task(name: str) -> TaskSpec:
    """Returns the spec of a registered task such as ``"mnli_m"``.

    Raises:
        ValueError: If ``name`` is not registered; the message lists the known names.
    """
    return _resolve(name, "name")


def _resolve(task: str | TaskSpec, argname: str = "task") -> TaskSpec:
    if isinstance(task, TaskSpec):
        return task
    if not isinstance(task, str) or task not in TASKS:
        raise ValueError(
            f"{argname}: unknown task {task!r}; known tasks: {', '.join(sorted(TASKS))}"
        )
    return TASKS[task]


def register_task(
    spec: TaskSpec,
    *,
    formatter: Formatter | None = None,
    row_filter: RowFilter | None = None,
    replace: bool = False,
) -> TaskSpec:
    """Adds a custom task to :data:`TASKS` and :data:`CLUSTERS`.

    Without ``formatter`` the spec's slots, options/label fields or answer field drive the
    formatting, like the built-in tasks. With it, the template is still chosen the official way
    and ``formatter(spec, row, question_template)`` returns ``(question, answer, options, label)``.

    Args:
        spec: The task spec.
        formatter: Optional custom formatter.
        row_filter: Optional row predicate; overrides ``spec.filter``.
        replace: Allow replacing a registered task of the same name.

    Returns:
        ``spec``.

    Raises:
        TypeError: If ``spec`` is not a :class:`TaskSpec`.
        ValueError: If the name is taken, ``spec.filter`` is unknown or, without ``formatter``,
            the spec lacks the fields the built-in formatting needs.
    """
    if not isinstance(spec, TaskSpec):
        raise TypeError(f"spec must be a TaskSpec, got {type(spec).__name__}")
    if spec.name in TASKS and not replace:
        raise ValueError(f"spec: task {spec.name!r} is already registered (pass replace=True)")
    if row_filter is None and spec.filter is not None and spec.filter not in _FILTERS:
        raise ValueError(f"spec: unknown filter {spec.filter!r}; known: {sorted(_FILTERS)}")
    if formatter is None:
        _check_formattable(spec, "spec")
    if spec.name in TASKS:
        unregister_task(spec.name)
    TASKS[spec.name] = spec
    CLUSTERS[spec.cluster] = (*CLUSTERS.get(spec.cluster, ()), spec.name)
    if formatter is not None:
        _FORMATTERS[spec.name] = formatter
    if row_filter is not None:
        _ROW_FILTERS[spec.name] = row_filter
    return spec


def unregister_task(name: str) -> None:
    """Removes a registered task (built-in ones too) with its formatter and filter.

    Raises:
        ValueError: If ``name`` is not registered.
    """
    spec = _resolve(name, "name")
    del TASKS[name]
    rest = tuple(n for n in CLUSTERS.get(spec.cluster, ()) if n != name)
    if rest:
        CLUSTERS[spec.cluster] = rest
    else:
        CLUSTERS.pop(spec.cluster, None)
    _FORMATTERS.pop(name, None)
    _ROW_FILTERS.pop(name, None)


def _check_formattable(spec: TaskSpec, argname: str) -> None:
    if spec.kind == "choice":
        if spec.label_field is None or (spec.options is None and not spec.option_fields):
            raise ValueError(f"{argname}: choice task {spec.name!r} needs label_field and options")
    elif spec.answer_field is None:
        raise ValueError(f"{argname}: generation task {spec.name!r} needs answer_field")


def _lookup(entry: Mapping[str, Any], path: str, task: str) -> Any:
    value: Any = entry
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            raise ValueError(f"entry is missing field {path!r} needed by task {task!r}")
        value = value[part]
    return value


def _transform(name: str | None, value: Any) -> str:
    return _as_str(value) if name is None else _TRANSFORMS[name](value)


def _label(spec: TaskSpec, entry: Mapping[str, Any]) -> int:
    assert spec.label_field is not None
    raw = _lookup(entry, spec.label_field, spec.name)
    try:
        if spec.label_map is None:
            return int(raw)
        key = raw if isinstance(raw, str) else str(int(raw))
    except (TypeError, ValueError):
        raise ValueError(f"entry: label {raw!r} of task {spec.name!r} is not an integer") from None
    value = spec.label_map.get(key, spec.label_default)
    if value is None:
        raise ValueError(
            f"entry: label {raw!r} of task {spec.name!r} is not in {list(spec.label_map)}"
        )
    return value


def _options(spec: TaskSpec, entry: Mapping[str, Any]) -> tuple[str, ...]:
    if spec.options is not None:
        return spec.options
    if len(spec.option_fields) == 1:
        values = _lookup(entry, spec.option_fields[0], spec.name)
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
            raise ValueError(f"entry: field {spec.option_fields[0]!r} must be a list of options")
    else:
        values = [_lookup(entry, f, spec.name) for f in spec.option_fields]
    return tuple(" " + _transform(spec.option_transform, v) for v in values)


def _builtin_format(
    spec: TaskSpec, entry: Mapping[str, Any], template: str
) -> tuple[str, str, tuple[str, ...], int | None]:
    _check_formattable(spec, "task")
    question = template
    for slot in spec.slots:
        value = _transform(slot.transform, _lookup(entry, slot.source, spec.name))
        question = question.replace(slot.placeholder, value)
    if spec.kind == "generation":
        assert spec.answer_field is not None
        gold = _lookup(entry, spec.answer_field, spec.name)
        return question, spec.answer_prefix + _transform(spec.answer_transform, gold), (), None
    options = _options(spec, entry)
    label = _label(spec, entry)
    if not 0 <= label < len(options):
        raise ValueError(f"entry: label {label} is out of range for {len(options)} options")
    return question, options[label], options, label


def _template_seed(entry: Mapping[str, Any], index: int | None) -> int | float | str | bytes:
    key = entry.get("id")
    if key is None:
        return FALLBACK_SEED if index is None else index
    if isinstance(key, (int, float, str, bytes)):
        return key
    raise ValueError(f"entry: 'id' must be an int or a string to seed the template, got {key!r}")


def format_example(
    task: str | TaskSpec, entry: Mapping[str, Any], *, index: int | None = None
) -> Example:
    """Formats one raw dataset row like the official task class.

    The template is ``random.Random(seed).choice(range(len(templates)))``, the same draw as the
    official ``random.seed(seed); random.choice(templates)``, with ``seed`` = ``entry["id"]``
    (when present and not ``None``), else ``index``, else 42. The official loaders overwrite
    ``id`` with the row's position in the split before formatting, as :func:`load_examples` does.

    Args:
        task: Task name or spec.
        entry: One raw row with the Hub field names (``premise``/``hypothesis``/``label`` for
            glue/mnli, ``sentence1``/``sentence2`` for mrpc, ...).
        index: Seed for rows without an ``id``, e.g. their position in the split.

    Returns:
        The formatted example.

    Raises:
        ValueError: On an unknown ``task``, a negative ``index``, or an ``entry`` that lacks a
            field or has a malformed label or ``id``.
        TypeError: If ``entry`` is not a mapping.
    """
    spec = _resolve(task)
    if not isinstance(entry, Mapping):
        raise TypeError(f"entry must be a mapping, got {type(entry).__name__}")
    if index is not None and (not isinstance(index, int) or isinstance(index, bool) or index < 0):
        raise ValueError(f"index must be a non-negative int or None, got {index!r}")
    seed = _template_seed(entry, index)
    chosen = random.Random(seed).choice(range(spec.num_templates))
    template = spec.templates[chosen][0]
    formatter = _FORMATTERS.get(spec.name, _builtin_format)
    question, answer, options, label = formatter(spec, entry, template)
    return Example(str(seed), question, answer, tuple(options), label, spec.name, chosen)


def _read_rows(data: RowSource, spec: TaskSpec, split: str) -> list[dict[str, Any]]:
    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        if path.is_dir():
            return _read_rows(_load_from_disk(path), spec, split)
        if not path.is_file():
            raise FileNotFoundError(f"data: no such file or directory: {path}")
        return _read_json_rows(path)
    if isinstance(data, Mapping):  # a DatasetDict or {split: rows}
        ds = spec.dataset
        official = (ds.train_split if split == "train" else ds.test_split) if ds else None
        for key in [split, official] + ([] if split == "train" else ["validation", "test"]):
            if key is not None and key in data:
                return _read_rows(data[key], spec, split)
        raise ValueError(f"data has no split for {split!r}; splits: {sorted(map(str, data))}")
    rows: Any = data
    if isinstance(rows, (bytes, bytearray)) or not isinstance(rows, Iterable):
        raise TypeError(f"data must be a path or a sequence of rows, got {type(rows).__name__}")
    rows = list(rows)
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise ValueError(f"data: row {i} is a {type(row).__name__}, not a mapping")
    return [dict(row) for row in rows]


def _read_json_rows(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    try:
        if text.lstrip().startswith("["):  # a JSON array (e.g. an official prompt-pool file)
            rows = list(json.loads(text))
        else:
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as err:
        raise ValueError(f"data: {path} is not JSON or JSON lines: {err}") from None
    for n, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValueError(f"data: row {n} of {path} is not a JSON object")
    return rows


def _load_from_disk(path: Path) -> Any:
    import datasets  # optional dependency, only needed for save_to_disk directories

    return datasets.load_from_disk(str(path))


def _filtered(spec: TaskSpec, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keep = _ROW_FILTERS.get(spec.name) or (_FILTERS.get(spec.filter) if spec.filter else None)
    if keep is None:
        if spec.filter is not None:
            raise ValueError(f"task: unknown filter {spec.filter!r}; known: {sorted(_FILTERS)}")
        return rows
    try:
        return [row for row in rows if keep(row)]
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"data: row cannot be filtered for task {spec.name!r}: {err!r}") from None


def _balanced(spec: TaskSpec, rows: list[dict[str, Any]], cap: int) -> list[dict[str, Any]]:
    per_class = cap // spec.class_num
    counts = [0] * spec.class_num
    out: list[dict[str, Any]] = []
    for row in rows:
        if len(out) >= cap:
            break
        if spec.name in _FORMATTERS:
            label = format_example(spec, row).label
        else:
            _check_formattable(spec, "task")
            label = _label(spec, row)
        if label is None or not 0 <= label < spec.class_num:
            raise ValueError(f"data: label {label!r} out of range for class_num {spec.class_num}")
        if counts[label] < per_class:
            counts[label] += 1
            out.append(row)
    return out


def load_examples(
    task: str | TaskSpec,
    split: str,
    *,
    data: RowSource,
    limit: int | None = None,
    seed: int = SHUFFLE_SEED,
) -> list[Example]:
    """Loads and formats one split like the official ``get_dataset`` + ``load_data_split``.

    ``"train"``: rows are shuffled with ``numpy.random.default_rng(seed).permutation`` (what
    ``datasets.Dataset.shuffle(seed=42)`` does), then filtered, then the first ``limit`` rows are
    kept (default :data:`TRAIN_CAP`, the official ``ds_size``); with ``balance_class`` the rows
    are taken in shuffled order while their class has fewer than ``limit // class_num``.
    ``"validation"``/``"test"``: rows are filtered and kept in order (``limit`` truncates, which
    the official code does not do). Every kept row gets ``id`` = its position, as the official
    prompt-pool and retriever code assign before formatting.

    Args:
        task: Task name or spec.
        split: ``"train"``, ``"validation"`` or ``"test"`` (the latter two are the same:
            evaluation rows).
        data: A JSONL file (one raw row per line; a JSON array file also works), a
            ``datasets.save_to_disk`` directory (``datasets`` is imported lazily), a mapping of
            split name to rows (e.g. a ``DatasetDict``) or a sequence of rows. Never the Hub.
        limit: Rows to keep; ``None`` means :data:`TRAIN_CAP` for train and all for evaluation.
        seed: Shuffle seed of the train split (official: 42).

    Returns:
        The formatted examples.

    Raises:
        ValueError: On an unknown ``task`` or ``split``, a negative ``limit``, malformed rows in
            ``data`` or rows missing fields.
        FileNotFoundError: If ``data`` is a path that does not exist.
    """
    spec = _resolve(task)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
        raise ValueError(f"limit must be a non-negative int or None, got {limit!r}")
    rows = _read_rows(data, spec, split)
    if split == "train":
        order = np.random.default_rng(seed).permutation(len(rows))
        rows = _filtered(spec, [rows[int(i)] for i in order])
        cap = TRAIN_CAP if limit is None else limit
        rows = _balanced(spec, rows, cap) if spec.balance_class else rows[:cap]
    else:
        rows = _filtered(spec, rows)
        if limit is not None:
            rows = rows[:limit]
    examples = []
    for i, row in enumerate(rows):
        try:
            examples.append(format_example(spec, {**row, "id": i}))
        except ValueError as err:
            raise ValueError(f"data: kept row {i}: {err}") from None
    return examples
