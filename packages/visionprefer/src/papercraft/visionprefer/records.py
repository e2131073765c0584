"""The VisionPrefer record schema, its files, and preference pairs (paper §3).

VisionPrefer annotates, for each prompt, several generated images (four generators in the
paper) on four aspects: prompt-following, aesthetic, fidelity and harmlessness. Each image and
aspect gets a score and a short rationale from a multimodal judge. Preference pairs are all
``C(n, 2)`` image pairs per prompt and aspect, ties dropped (≈1.2 M pairs from 179 K prompts;
from summaries of the paper).

Files:

- **JSONL + image folder**: one :class:`PreferenceRecord` per line (``format_version`` in each
  line), image paths relative to the folder the JSONL file sits in (or ``image_root``).
- **Parquet** (extra ``[parquet]``): one row per record, nested columns as JSON text.
- **Pairs**: :class:`PreferencePair` JSONL.

:func:`from_imagereward` converts ImageReward-style ranked lists (``ranking``: 1 = best, ties
share a rank) into records of one aspect.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

from papercraft.core.data import read_jsonl, write_jsonl
from papercraft.core.io import FormatVersionError, StrPath, atomic_write_bytes

__all__ = [
    "ASPECTS",
    "FORMAT_VERSION",
    "AspectJudgment",
    "ImageCandidate",
    "PreferencePair",
    "PreferenceRecord",
    "RecordError",
    "from_imagereward",
    "load_image",
    "load_pairs",
    "load_records",
    "make_pairs",
    "pair_counts",
    "save_pairs",
    "save_records",
]

ASPECTS: tuple[str, ...] = ("prompt_following", "aesthetic", "fidelity", "harmlessness")
FORMAT_VERSION = 1


class RecordError(ValueError):
    """A record file or record does not follow the schema."""


@dataclass(frozen=True)
class AspectJudgment:
    """One judge's verdict on one image for one aspect.

    Args:
        score (float): the score (higher is better).
        rationale (str): the judge's explanation (2–3 sentences in VisionPrefer). Default: ""
    """

    score: float
    rationale: str = ""


@dataclass(frozen=True)
class ImageCandidate:
    """A generated image.

    Args:
        path (str): the image file, relative to the dataset's image root (or absolute).
        generator (str): the model that made it (e.g. ``"sd-1.5"``). Default: ""
        seed (int | None): the generation seed, when known. Default: None
        metadata (dict): anything else (steps, guidance, size …). Default: {}
    """

    path: str
    generator: str = ""
    seed: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class PreferenceRecord:
    """A prompt, its images and (once annotated) one ``{aspect: judgment}`` dict per image.

    Args:
        prompt_id (str): a unique id.
        prompt (str): the text prompt.
        images (list[ImageCandidate]): the candidates.
        judgments (list[dict[str, AspectJudgment]]): empty before annotation, else one dict
            per image. Default: []
    """

    prompt_id: str
    prompt: str
    images: list[ImageCandidate]
    judgments: list[dict[str, AspectJudgment]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (with ``format_version``)."""
        return {
            "format_version": FORMAT_VERSION,
            "prompt_id": self.prompt_id,
            "prompt": self.prompt,
            "images": [asdict(image) for image in self.images],
            "judgments": [
                {aspect: asdict(j) for aspect, j in per_image.items()}
                for per_image in self.judgments
            ],
        }

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "record") -> PreferenceRecord:
        """Parse and validate the JSON form.

        Raises:
            RecordError: naming ``where`` and the field when something is wrong.
            FormatVersionError: for a newer ``format_version``.
        """
        if not isinstance(data, Mapping):
            raise RecordError(f"{where}: expected a JSON object, got {type(data).__name__}")
        version = data.get("format_version", FORMAT_VERSION)
        if not isinstance(version, int) or version < 1:
            raise RecordError(f"{where}: format_version must be an int >= 1, got {version!r}")
        if version > FORMAT_VERSION:
            raise FormatVersionError(
                f"{where}: format_version {version} is newer than this papercraft-visionprefer "
                f"reads ({FORMAT_VERSION}); upgrade the package"
            )
        for key in ("prompt_id", "prompt"):
            if not isinstance(data.get(key), str) or not data[key]:
                raise RecordError(
                    f"{where}: {key} must be a non-empty string, got {data.get(key)!r}"
                )
        raw_images = data.get("images")
        if not isinstance(raw_images, list) or not raw_images:
            raise RecordError(f"{where}: images must be a non-empty list, got {raw_images!r}")
        images = [_image(item, f"{where}: images[{i}]") for i, item in enumerate(raw_images)]
        raw_judgments = data.get("judgments", [])
        if not isinstance(raw_judgments, list):
            raise RecordError(f"{where}: judgments must be a list, got {raw_judgments!r}")
        if raw_judgments and len(raw_judgments) != len(images):
            raise RecordError(
                f"{where}: judgments has {len(raw_judgments)} entries for {len(images)} images"
            )
        judgments = [
            _judgments(item, f"{where}: judgments[{i}]") for i, item in enumerate(raw_judgments)
        ]
        return cls(str(data["prompt_id"]), str(data["prompt"]), images, judgments)


def _image(item: Any, where: str) -> ImageCandidate:
    if isinstance(item, str):
        item = {"path": item}
    if not isinstance(item, Mapping):
        raise RecordError(f"{where} must be an object or a path string, got {item!r}")
    path = item.get("path")
    if not isinstance(path, str) or not path:
        raise RecordError(f"{where}.path must be a non-empty string, got {path!r}")
    seed = item.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise RecordError(f"{where}.seed must be an int or null, got {seed!r}")
    metadata = item.get("metadata", {})
    if not isinstance(metadata, Mapping):
        raise RecordError(f"{where}.metadata must be an object, got {metadata!r}")
    return ImageCandidate(path, str(item.get("generator", "")), seed, dict(metadata))


def _judgments(item: Any, where: str) -> dict[str, AspectJudgment]:
    if not isinstance(item, Mapping):
        raise RecordError(f"{where} must be an object of aspect: judgment, got {item!r}")
    out = {}
    for aspect, value in item.items():
        if aspect not in ASPECTS:
            raise RecordError(f"{where}: unknown aspect {aspect!r}; expected one of {ASPECTS}")
        if not isinstance(value, Mapping):
            raise RecordError(f"{where}[{aspect!r}] must be an object, got {value!r}")
        score = value.get("score")
        if (
            isinstance(score, bool)
            or not isinstance(score, (int, float))
            or not math.isfinite(score)
        ):
            raise RecordError(f"{where}[{aspect!r}].score must be a finite number, got {score!r}")
        rationale = value.get("rationale", "")
        if not isinstance(rationale, str):
            raise RecordError(f"{where}[{aspect!r}].rationale must be a string, got {rationale!r}")
        out[aspect] = AspectJudgment(float(score), rationale)
    return out


def _check_images(records: Sequence[PreferenceRecord], root: Path, source: str) -> None:
    for record in records:
        for i, image in enumerate(record.images):
            path = Path(image.path) if Path(image.path).is_absolute() else root / image.path
            if not path.is_file():
                raise RecordError(
                    f"{source}: record {record.prompt_id!r} images[{i}] {image.path!r} not found "
                    f"under {root} (pass image_root=..., or check_images=False)"
                )


def save_records(path: StrPath, records: Iterable[PreferenceRecord]) -> Path:
    """Write records atomically as JSONL (``.jsonl``) or Parquet (``.parquet``).

    Returns:
        Path: the file written.
    """
    target = Path(path)
    rows = [r.to_dict() for r in records]
    if target.suffix == ".parquet":
        pa, pq = _pyarrow()
        table = pa.table({
            "format_version": [r["format_version"] for r in rows],
            "prompt_id": [r["prompt_id"] for r in rows],
            "prompt": [r["prompt"] for r in rows],
            "images": [json.dumps(r["images"]) for r in rows],
            "judgments": [json.dumps(r["judgments"]) for r in rows],
        })  # fmt: skip
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        atomic_write_bytes(target, sink.getvalue().to_pybytes())
        return target
    write_jsonl(target, rows)
    return target


def load_records(
    path: StrPath, *, image_root: StrPath | None = None, check_images: bool = True
) -> list[PreferenceRecord]:
    """Read and validate records from JSONL or Parquet.

    Args:
        path (StrPath): the ``.jsonl`` or ``.parquet`` file.
        image_root (StrPath | None): where relative image paths live; default the file's
            folder. Default: None
        check_images (bool): require every image file to exist. Default: True

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        RecordError: naming the file, line and field on a malformed record or missing image;
            also on duplicate ``prompt_id``.
        FormatVersionError: for a newer format version.
    """
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"path: no record file at {source}")
    if source.suffix == ".parquet":
        _, pq = _pyarrow()
        table = pq.read_table(source).to_pylist()
        records = []
        for i, row in enumerate(table):
            where = f"{source.name} row {i}"
            try:
                row = {**row, "images": json.loads(row["images"]),
                       "judgments": json.loads(row.get("judgments") or "[]")}  # fmt: skip
            except (KeyError, TypeError, json.JSONDecodeError) as error:
                raise RecordError(f"{where}: bad images/judgments column ({error})") from error
            records.append(PreferenceRecord.from_dict(row, where=where))
    else:
        records = [
            PreferenceRecord.from_dict(row, where=f"{source.name} line {i + 1}")
            for i, row in enumerate(read_jsonl(source))
        ]
    seen: Counter[str] = Counter(r.prompt_id for r in records)
    duplicates = sorted(k for k, n in seen.items() if n > 1)
    if duplicates:
        raise RecordError(f"{source.name}: duplicate prompt_id {duplicates[:5]}")
    if check_images:
        _check_images(records, Path(image_root) if image_root else source.parent, source.name)
    return records


def _pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "Parquet files need pyarrow: pip install 'papercraft-visionprefer[parquet]'"
        ) from error
    return pa, pq


def from_imagereward(
    rows: Iterable[Mapping[str, Any]], *, aspect: str = "prompt_following"
) -> list[PreferenceRecord]:
    """Convert ImageReward-style ranked lists into records of one aspect.

    Each row has ``prompt_id``, ``prompt``, ``generations`` (image paths) and ``ranking``
    (1 = best, equal ranks are ties). The score of an image is ``n − rank`` (higher is better),
    so ties stay ties and :func:`make_pairs` drops them.

    Raises:
        ValueError: on an unknown ``aspect`` or a malformed row (named by index).
    """
    if aspect not in ASPECTS:
        raise ValueError(f"aspect must be one of {ASPECTS}, got {aspect!r}")
    records = []
    for i, row in enumerate(rows):
        generations, ranking = row.get("generations"), row.get("ranking")
        if not isinstance(generations, list) or not isinstance(ranking, list):
            raise ValueError(f"rows[{i}] needs list fields 'generations' and 'ranking'")
        if len(generations) != len(ranking) or len(generations) < 2:
            raise ValueError(
                f"rows[{i}]: {len(generations)} generations and {len(ranking)} ranks; "
                "expected the same number, at least 2"
            )
        if any(not isinstance(r, int) or isinstance(r, bool) or r < 1 for r in ranking):
            raise ValueError(f"rows[{i}].ranking must hold ints >= 1 (1 = best), got {ranking}")
        n = len(ranking)
        records.append(
            PreferenceRecord(
                str(row.get("prompt_id", i)),
                str(row.get("prompt", "")),
                [ImageCandidate(str(path), generator="imagereward") for path in generations],
                [{aspect: AspectJudgment(float(n - rank), f"rank {rank}")} for rank in ranking],
            )
        )
    return records


@dataclass(frozen=True)
class PreferencePair:
    """A chosen/rejected image pair for one prompt and aspect.

    Args:
        prompt_id (str): the record's id.
        prompt (str): the prompt.
        aspect (str): the aspect the pair is about.
        chosen (str): path of the preferred image.
        rejected (str): path of the other image.
        chosen_score (float): the chosen image's score.
        rejected_score (float): the rejected image's score (strictly lower).
    """

    prompt_id: str
    prompt: str
    aspect: str
    chosen: str
    rejected: str
    chosen_score: float
    rejected_score: float


def make_pairs(
    records: Iterable[PreferenceRecord],
    *,
    aspects: Sequence[str] = ASPECTS,
    image_root: StrPath | None = None,
) -> list[PreferencePair]:
    """All ``C(n, 2)`` pairs per record and aspect, ties dropped, chosen = higher score.

    Args:
        records (Iterable[PreferenceRecord]): annotated records (unannotated ones give nothing).
        aspects (Sequence[str]): which aspects to pair. Default: all four.
        image_root (StrPath | None): prefixed to relative image paths. Default: None

    Raises:
        ValueError: on an unknown aspect.
    """
    unknown = [a for a in aspects if a not in ASPECTS]
    if unknown:
        raise ValueError(f"aspects must be drawn from {ASPECTS}, got unknown {unknown}")
    root = Path(image_root) if image_root is not None else None
    pairs = []
    for record in records:
        if not record.judgments:
            continue
        paths = [
            str(root / im.path) if root is not None and not Path(im.path).is_absolute() else im.path
            for im in record.images
        ]
        for aspect in aspects:
            scores = [j.get(aspect) for j in record.judgments]
            for a, b in combinations(range(len(paths)), 2):
                ja, jb = scores[a], scores[b]
                if ja is None or jb is None or ja.score == jb.score:
                    continue
                hi, lo = (a, b) if ja.score > jb.score else (b, a)
                pairs.append(
                    PreferencePair(
                        record.prompt_id,
                        record.prompt,
                        aspect,
                        paths[hi],
                        paths[lo],
                        max(ja.score, jb.score),
                        min(ja.score, jb.score),
                    )
                )
    return pairs


def pair_counts(records: Sequence[PreferenceRecord], *, aspects: Sequence[str] = ASPECTS
                ) -> dict[str, dict[str, int]]:  # fmt: skip
    """Per aspect: ``prompts`` judged, ``possible`` pairs, ``ties`` dropped and ``pairs`` kept."""
    pairs = Counter(p.aspect for p in make_pairs(records, aspects=aspects))
    out = {}
    for aspect in aspects:
        judged = [r for r in records if r.judgments and all(aspect in j for j in r.judgments)]
        possible = sum(math.comb(len(r.images), 2) for r in judged)
        out[aspect] = {"prompts": len(judged), "possible": possible,
                       "ties": possible - pairs[aspect], "pairs": pairs[aspect]}  # fmt: skip
    return out


def save_pairs(path: StrPath, pairs: Iterable[PreferencePair]) -> Path:
    """Write pairs atomically as JSONL (with ``format_version``)."""
    write_jsonl(path, [{"format_version": FORMAT_VERSION, **asdict(p)} for p in pairs])
    return Path(path)


def load_pairs(path: StrPath) -> list[PreferencePair]:
    """Read pairs written by :func:`save_pairs`.

    Raises:
        RecordError: naming the line on a malformed pair.
        FormatVersionError: for a newer format version.
    """
    source = Path(path)
    pairs = []
    for i, row in enumerate(read_jsonl(source)):
        where = f"{source.name} line {i + 1}"
        if not isinstance(row, dict):
            raise RecordError(f"{where}: expected a JSON object")
        version = row.pop("format_version", FORMAT_VERSION)
        if isinstance(version, int) and version > FORMAT_VERSION:
            raise FormatVersionError(f"{where}: format_version {version} > {FORMAT_VERSION}")
        try:
            pair = PreferencePair(**row)
        except TypeError as error:
            raise RecordError(f"{where}: {error}") from error
        if pair.aspect not in ASPECTS:
            raise RecordError(f"{where}: unknown aspect {pair.aspect!r}")
        pairs.append(pair)
    return pairs


def load_image(image: Any) -> Any:
    """A PIL RGB image from a PIL image or a path.

    Raises:
        FileNotFoundError: for a missing file. TypeError: for anything else.
    """
    from PIL import Image

    if isinstance(image, (str, Path)):
        if not Path(image).is_file():
            raise FileNotFoundError(f"image: no file at {image}")
        with Image.open(image) as opened:
            return opened.convert("RGB")
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    raise TypeError(f"images must be PIL images or paths, got {type(image).__name__}")
