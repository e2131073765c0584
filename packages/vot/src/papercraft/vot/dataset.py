"""Benchmark instances in the official release schema: build, export, import.

Every instance carries the fields of the official JSONL files (VoT README, "Schema"):
``desc`` (the task description: the filled ``desc-text`` template, stripped), ``desc_multimodal``
(the filled ``desc-multimodal`` template: OpenAI-style chat messages with the map or board as a
base64 PNG), ``answer``, ``puzzle_path``, ``config_path``, ``difficulty`` and ``instance_id``,
laid out as the official ``gen-data.sh`` writes them (``route-planning.jsonl``,
``next-step-prediction.jsonl``, ``visual-tiling.jsonl``). Natural-language navigation, which
the official repository leaves to SpatialEvalLLM, uses the same schema
(``natural-language-navigation.jsonl``; ``difficulty`` is the walk's number of steps).

Exported records add ``task`` and ``meta`` (what the reference responders need, e.g. the gold
grid); both are optional on import, so the official released files load as they are.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from papercraft.core.data import read_jsonl, write_jsonl
from papercraft.core.io import StrPath
from papercraft.vot.navigation import NavigationMap, all_maps, simulate
from papercraft.vot.nlnav import generate_nl_navigation
from papercraft.vot.prompts import TASKS, fill_template, resolve_task
from papercraft.vot.tiling import (
    EMOJIS,
    TTLII,
    TilingQuestion,
    solve_tilings,
    tiling_configurations,
    tiling_questions,
)

__all__ = [
    "FIELDS",
    "Instance",
    "build_next_step",
    "build_nl_navigation",
    "build_route_planning",
    "build_task",
    "build_visual_tiling",
    "load_instances",
    "save_instances",
    "task_file",
]

#: the official release schema, in its order.
FIELDS: tuple[str, ...] = (
    "desc",
    "desc_multimodal",
    "answer",
    "puzzle_path",
    "config_path",
    "difficulty",
    "instance_id",
)
ImageEncoder = Callable[[Sequence[str]], str]


@dataclass(frozen=True)
class Instance:
    """One benchmark question in the official schema.

    Args:
        task (str): one of :data:`papercraft.vot.prompts.TASKS`.
        desc (str): the task description.
        desc_multimodal (list[dict] | None): chat messages with images; None when the instance
            was built without images.
        answer (str | list[str]): the gold answer (a direction list for route planning).
        puzzle_path (str): the official puzzle folder, relative to the JSONL file; unique.
        config_path (str): the official configuration folder.
        difficulty (int): the level.
        instance_id (str): the official id (unique within a level).
        meta (dict): extra data for the reference responders (not part of the schema).
    """

    task: str
    desc: str
    desc_multimodal: list[dict[str, Any]] | None
    answer: str | list[str]
    puzzle_path: str
    config_path: str
    difficulty: int
    instance_id: str
    meta: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def uid(self) -> str:
        """str: a key unique across the task (the puzzle path)."""
        return self.puzzle_path

    @property
    def piece_name(self) -> str:
        """str: for visual tiling, the asked piece's name (the puzzle folder's last part)."""
        return self.puzzle_path.rstrip("/").rsplit("/", 1)[-1]

    def to_record(self) -> dict[str, Any]:
        """The JSON record: the official fields, then ``task`` and ``meta``."""
        record: dict[str, Any] = {name: getattr(self, name) for name in FIELDS}
        record["task"] = self.task
        if self.meta:
            record["meta"] = self.meta
        return record

    @classmethod
    def from_record(
        cls, record: Any, task: str | None = None, *, where: str = "record"
    ) -> Instance:
        """Check and convert one JSON record (official or exported).

        Raises:
            ValueError: naming the missing or malformed field.
        """
        if not isinstance(record, dict):
            raise ValueError(f"{where} must be a JSON object, got {type(record).__name__}")
        missing = [name for name in FIELDS if name not in record]
        if missing:
            raise ValueError(f"{where} lacks the official fields {missing}")
        name = record.get("task", task)
        if name is None:
            raise ValueError(f"{where} has no 'task' field; pass task=")
        name = resolve_task(name)
        if task is not None and resolve_task(task) != name:
            raise ValueError(f"{where} is a {name!r} record, expected {resolve_task(task)!r}")
        for key in ("desc", "puzzle_path", "config_path", "instance_id"):
            if not isinstance(record[key], str) or not record[key]:
                raise ValueError(f"{where}[{key!r}] must be a non-empty str")
        difficulty = record["difficulty"]
        if isinstance(difficulty, bool) or not isinstance(difficulty, int):
            raise ValueError(f"{where}['difficulty'] must be an int, got {difficulty!r}")
        answer = record["answer"]
        if name == "route-planning":
            if (
                not isinstance(answer, list)
                or not answer
                or not all(a in ("up", "left", "down", "right") for a in answer)
            ):
                raise ValueError(f"{where}['answer'] must be a non-empty list of directions")
        elif not isinstance(answer, str) or not answer:
            raise ValueError(f"{where}['answer'] must be a non-empty str")
        mm = record["desc_multimodal"]
        if mm is not None and not (isinstance(mm, list) and all(isinstance(m, dict) for m in mm)):
            raise ValueError(f"{where}['desc_multimodal'] must be a list of messages or null")
        meta = record.get("meta") or {}
        if not isinstance(meta, dict):
            raise ValueError(f"{where}['meta'] must be an object")
        return cls(name, record["desc"], mm, answer, record["puzzle_path"],
                   record["config_path"], difficulty, record["instance_id"], meta)  # fmt: skip


def task_file(task: str) -> str:
    """The official JSONL file name of a task, e.g. ``route-planning.jsonl``."""
    return f"{resolve_task(task)}.jsonl"


def _encoder(images: bool | ImageEncoder) -> ImageEncoder | None:
    if images is False:
        return None
    if images is True:
        from papercraft.vot.render import grid_png_base64

        cache: dict[tuple[str, ...], str] = {}

        def encode(rows: Sequence[str]) -> str:
            key = tuple(rows)
            if key not in cache:
                cache[key] = grid_png_base64(list(key))
            return cache[key]

        return encode
    if callable(images):
        return images
    raise ValueError("images must be a bool or a callable rows -> base64 PNG")


def _multimodal(task: str, fields: dict[str, str]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = json.loads(fill_template(task, "desc-multimodal", fields))
    return messages


def _check_levels(levels: Iterable[int], low: int) -> list[int]:
    out = list(levels)
    if not out or any(isinstance(k, bool) or not isinstance(k, int) or k < low for k in out):
        raise ValueError(f"levels must be a non-empty sequence of ints >= {low}, got {out!r}")
    return out


def _route_meta(nav: NavigationMap) -> dict[str, Any]:
    return {"grid": list(nav.grid), "start": list(nav.start), "destination": list(nav.destination)}


def build_route_planning(
    levels: Iterable[int] = range(2, 8), *, images: bool | ImageEncoder = True
) -> list[Instance]:
    """Every route-planning question: one per map (496 for levels 2-7).

    Args:
        levels (Iterable[int]): map levels (number of segments). Default: 2-7.
        images (bool | Callable): render the maps for ``desc_multimodal`` (True), leave it None
            (False), or a function rows → base64 PNG. Default: True.
    """
    encode = _encoder(images)
    out = []
    for level in _check_levels(levels, 1):
        for case, nav in enumerate(all_maps(level), start=1):
            fields = {"INITIAL_MAP": nav.text(), "ENCODED_MAP": ""}
            desc = fill_template("route-planning", "desc-text", fields).strip()
            mm = None
            if encode is not None:
                fields["ENCODED_MAP"] = encode(nav.grid)
                mm = _multimodal("route-planning", fields)
            out.append(Instance("route-planning", desc, mm, list(nav.directions),
                                f"route-planning/level-{level}/{case}",
                                f"configurations/level-{level}/{case}", level, str(case),
                                _route_meta(nav)))  # fmt: skip
    return out


def build_next_step(
    levels: Iterable[int] = range(2, 8), *, images: bool | ImageEncoder = True
) -> list[Instance]:
    """Every next-step question: ``k - 1`` per map (2,520 for levels 2-7)."""
    encode = _encoder(images)
    out = []
    for level in _check_levels(levels, 2):
        for case, nav in enumerate(all_maps(level), start=1):
            image = encode(nav.grid) if encode is not None else ""
            for index in range(level - 1):
                steps = [
                    f"{i + 1}. Move {d} to the end of continuous road."
                    for i, d in enumerate(nav.directions[: index + 1])
                ]
                fields = {
                    "INITIAL_MAP": nav.text(),
                    "ENCODED_MAP": image,
                    "NAVIGATING_INSTRUCTIONS": "\n".join(steps),
                    "MULTIMODAL_NAVAIGATING_INSTRUCTION": ",".join(
                        json.dumps({"type": "text", "text": s}) for s in steps
                    ),
                }
                desc = fill_template("next-step-prediction", "desc-text", fields).strip()
                mm = _multimodal("next-step-prediction", fields) if encode is not None else None
                position = nav.start
                for d in nav.directions[: index + 1]:
                    position = simulate(nav, position, d)
                meta = {**_route_meta(nav), "position": list(position)}
                out.append(Instance("next-step-prediction", desc, mm, nav.directions[index + 1],
                                    f"next-step-prediction/level-{level}/{case}/{index}",
                                    f"configurations/level-{level}/{case}", level,
                                    f"{case}/{index}", meta))  # fmt: skip
    return out


def _tiling_multimodal(question: TilingQuestion, encode: ImageEncoder) -> list[dict[str, Any]]:
    conf = question.configuration

    def text(value: str) -> str:
        return json.dumps({"type": "text", "text": value})

    parts = []
    for value, rows in question.variation_blocks():
        if rows is None:
            parts.append(text(value))
        else:
            url = "data:image/jpeg;base64," + encode(rows)
            parts.append(json.dumps({"type": "image_url", "image_url": {"url": url}}))
    fields = question.fields()
    fields.update(
        ENCODED_RECTANGLE=encode(conf.board_rows()),
        MULTIMODAL_PROVIDED_POLYOMINOES=",".join(text(x) for x in question.provided_lines()),
        MULTIMODAL_POLYOMINO_VARIATIONS=",".join(parts),
        MULTIMODAL_OPTIONS=",".join(text(x) for x in question.option_lines()),
    )
    return _multimodal("visual-tiling", fields)


def build_visual_tiling(
    levels: Iterable[int] = (2, 3),
    *,
    seed: int = 42,
    images: bool | ImageEncoder = True,
    height: int = 5,
    width: int = 4,
    pieces: Mapping[str, int] | None = None,
) -> list[Instance]:
    """Every visual-tiling question of a board (skip rule applied); TTLII on 5 × 4 by default.

    Args:
        levels (Iterable[int]): how many pieces are blanked. Default: (2, 3).
        seed (int): seeds the drawn answer and distractors per configuration. Default: 42.
        images (bool | Callable): as in :func:`build_route_planning`. Default: True.
        height (int): board rows. Default: 5.
        width (int): board columns. Default: 4.
        pieces (Mapping[str, int] | None): piece type → count (at most 6 pieces, one colour
            each); None is TTLII. Default: None.

    Raises:
        ValueError: on a board the pieces cannot tile, or more than 6 pieces.
    """
    encode = _encoder(images)
    counts = dict(TTLII if pieces is None else pieces)
    if sum(counts.values()) > len(EMOJIS):
        raise ValueError(f"pieces: at most {len(EMOJIS)} pieces (one colour each) are supported")
    tilings = solve_tilings(height, width, counts)
    if not tilings:
        raise ValueError(f"pieces {counts} cannot tile a {height} × {width} board")
    out = []
    for level in _check_levels(levels, 1):
        for question in tiling_questions(tiling_configurations(level, tilings), seed=seed):
            conf = question.configuration
            desc = fill_template("visual-tiling", "desc-text", question.fields()).strip()
            mm = _tiling_multimodal(question, encode) if encode is not None else None
            meta = {
                "board": conf.board_rows(),
                "solution": question.solved_rows(),
                "variation": question.correct_variation,
            }
            out.append(Instance("visual-tiling", desc, mm, question.answer,
                                f"puzzles/level-{level}/{question.instance_id}",
                                f"configurations/level-{level}/{conf.case_id}", level,
                                question.instance_id, meta))  # fmt: skip
    return out


def build_nl_navigation(
    n: int = 200, *, size: int = 3, steps: int = 8, seed: int = 8
) -> list[Instance]:
    """Natural-language navigation questions (see :func:`generate_nl_navigation`)."""
    out = []
    for number, sample in enumerate(
        generate_nl_navigation(n, size=size, steps=steps, seed=seed), 1
    ):
        messages = [{"role": "user", "content": [{"type": "text", "text": sample.question}]}]
        meta = {
            "directions": list(sample.directions),
            "objects": list(sample.objects),
            "path": [list(p) for p in sample.path],
            "size": sample.size,
        }
        out.append(Instance("natural-language-navigation", sample.question, messages,
                            sample.answer, f"natural-language-navigation/{number}",
                            f"natural-language-navigation/{number}", len(sample.directions),
                            str(number), meta))  # fmt: skip
    return out


def build_task(task: str, *, images: bool | ImageEncoder = True, **kwargs: Any) -> list[Instance]:
    """The full benchmark of one task with the paper's settings (keyword arguments passed on)."""
    name = resolve_task(task)
    if name == "route-planning":
        return build_route_planning(images=images, **kwargs)
    if name == "next-step-prediction":
        return build_next_step(images=images, **kwargs)
    if name == "visual-tiling":
        return build_visual_tiling(images=images, **kwargs)
    return build_nl_navigation(**kwargs)


def save_instances(instances: Sequence[Instance], path: StrPath) -> Path:
    """Write instances as JSONL (atomically), one record per line."""
    target = Path(path)
    write_jsonl(target, (inst.to_record() for inst in instances))
    return target


def load_instances(path: StrPath, task: str | None = None) -> list[Instance]:
    """Read a JSONL file of instances: an exported file or an official release file.

    Args:
        path (str | PathLike): the file.
        task (str | None): the task, needed when the records carry no ``task`` field (official
            files); None infers it from the file name (``route-planning.jsonl``, ...).

    Raises:
        ValueError: naming the line and field of a malformed record, or when the task cannot be
            told.
    """
    file = Path(path)
    if task is None:
        stem = file.name.removesuffix(".jsonl")
        task = stem if stem in TASKS else None
    out = []
    seen: set[str] = set()
    for line, record in enumerate(read_jsonl(file), start=1):
        inst = Instance.from_record(record, task, where=f"{file}:{line}")
        if inst.uid in seen:
            raise ValueError(f"{file}:{line}: duplicate puzzle_path {inst.uid!r}")
        seen.add(inst.uid)
        out.append(inst)
    return out
