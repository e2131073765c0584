"""Tests of papercraft.vot.dataset and .benchmark: official schema, round trips, layout."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
from PIL import Image

from papercraft.core.io import FormatVersionError, read_manifest
from papercraft.vot.benchmark import FORMAT, load_benchmark, task_path, write_benchmark
from papercraft.vot.dataset import (
    FIELDS,
    Instance,
    build_nl_navigation,
    build_route_planning,
    build_task,
    build_visual_tiling,
    load_instances,
    save_instances,
)

FIRST_ROUTE_DESC = (
    "Navigation Task: for a provided map, 🏠 is the home as starting point, 🏢 is the office as "
    "the destination. ⬜ means the road, 🚧 means the obstacle. There exists one and only one "
    "viable route for each map. Each step you choose a direction and move to the end of the "
    "continuous road or the destination.\n\nmap:\n```\n🏢⬜⬜\n🚧🚧⬜\n🚧🚧🏠\n```\n"
    "Starting from 🏠, provide the steps to navigate to 🏢."
)


def test_counts_paths_and_a_golden_description() -> None:
    routes = build_route_planning(images=False)
    assert len(routes) == 496
    first = routes[0]
    assert first.desc == FIRST_ROUTE_DESC
    assert (first.answer, first.difficulty, first.instance_id) == (["up", "left"], 2, "1")
    assert (first.puzzle_path, first.config_path) == (
        "route-planning/level-2/1",
        "configurations/level-2/1",
    )
    steps = build_task("next-step", images=False)
    assert len(steps) == 2520
    assert steps[0].instance_id == "1/0"
    assert steps[0].puzzle_path.endswith("level-2/1/0")
    assert steps[0].desc.endswith("1. Move up to the end of continuous road.\n\n"
                                  "What's the direction of next movement?\nA. Up\nB. Left\n"
                                  "C. Down\nD. Right")  # fmt: skip
    tiling = build_task("tiling", images=False)
    assert len(tiling) == 820
    assert tiling[0].puzzle_path == "puzzles/level-2/1/Tetromino I"
    assert tiling[0].piece_name == "Tetromino I"
    assert tiling[0].answer in ("A", "B")
    nl = build_nl_navigation(5)
    assert [i.instance_id for i in nl] == ["1", "2", "3", "4", "5"]
    assert all(i.desc.endswith("What will you find?") for i in nl)
    assert len({i.uid for i in routes + steps + tiling + nl}) == 496 + 2520 + 820 + 5


def test_multimodal_descriptions_hold_the_rendered_map() -> None:
    inst = build_route_planning([3])[2]
    assert inst.desc_multimodal is not None
    parts = inst.desc_multimodal[0]["content"]
    texts = [p["text"] for p in parts if p["type"] == "text"]
    assert texts[0] == inst.desc.split("\n\n")[0]
    (image,) = [p for p in parts if p["type"] == "image_url"]
    url = image["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")  # the official template's (mislabelled) type
    png = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    rows, cols = len(inst.meta["grid"]), len(inst.meta["grid"][0])
    assert png.size == ((36 + 7) * cols + 7, (36 + 7) * rows + 7)


def test_jsonl_round_trip_and_official_records(tmp_path: Path) -> None:
    instances = [*build_route_planning([2, 3])]
    path = save_instances(instances, tmp_path / "route-planning.jsonl")
    loaded = load_instances(path)
    assert loaded == instances
    assert [i.meta for i in loaded] == [i.meta for i in instances]
    # an official release record: the seven fields only, the task told by the file name
    record = {k: v for k, v in instances[0].to_record().items() if k in FIELDS}
    assert list(record) == list(FIELDS)
    official = tmp_path / "official" / "route-planning.jsonl"
    official.parent.mkdir()
    official.write_text(json.dumps(record) + "\n", encoding="utf-8")
    (inst,) = load_instances(official)
    assert inst == instances[0]
    assert inst.meta == {}
    with pytest.raises(ValueError, match="task="):
        load_instances(official.rename(tmp_path / "other.jsonl"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"desc": ""}, "'desc'"),
        ({"difficulty": "2"}, "'difficulty'"),
        ({"answer": ["north"]}, "'answer'"),
        ({"desc_multimodal": "x"}, "'desc_multimodal'"),
        ({"task": "maze"}, "task must be one of"),
    ],
)
def test_bad_records_name_the_field(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    record = build_route_planning([2], images=False)[0].to_record()
    record.update(change)
    path = tmp_path / "route-planning.jsonl"
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        load_instances(path)
    del record["instance_id"]
    with pytest.raises(ValueError, match="instance_id"):
        Instance.from_record(record, "route")


def test_duplicate_puzzles_are_refused(tmp_path: Path) -> None:
    inst = build_route_planning([2], images=False)[0]
    path = save_instances([inst, inst], tmp_path / "route-planning.jsonl")
    with pytest.raises(ValueError, match="duplicate"):
        load_instances(path)


def test_benchmark_directory_layout_manifest_and_versions(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    counts = write_benchmark(out, ["route", "tiling"], nl_navigation=None)
    assert counts == {"route-planning": 496, "visual-tiling": 820, "png": 496 + 384}
    assert task_path(out, "route") == out / "visual-navigation" / "route-planning.jsonl"
    assert (out / "visual-navigation" / "configurations" / "level-7" / "248" / "map.png").is_file()
    assert (out / "visual-tiling/configurations/level-3/128/target-rectangle.png").is_file()
    assert read_manifest(out).format == FORMAT
    tiles = load_benchmark(out, "tiling", verify=True)
    assert len(tiles) == 820
    assert tiles[0].desc_multimodal
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp leftovers
    with pytest.raises(FileExistsError, match="overwrite"):
        write_benchmark(out, ["route"])
    with pytest.raises(FileNotFoundError, match="natural-language-navigation"):
        load_benchmark(out, "nl-nav")
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    manifest["format_version"] = 99
    (out / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(FormatVersionError):
        load_benchmark(out, "route")


def test_nl_navigation_options_pass_through(tmp_path: Path) -> None:
    counts = write_benchmark(tmp_path / "nl", ["nl-nav"], png=False,
                             nl_navigation={"n": 7, "size": 4, "seed": 8})  # fmt: skip
    assert counts == {"natural-language-navigation": 7, "png": 0}
    (first, *_) = load_benchmark(tmp_path / "nl", "nl-nav")
    assert first.meta["size"] == 4
    assert len(first.meta["objects"]) == 16


def test_custom_tiling_boards_are_parameters() -> None:
    small = build_visual_tiling([1, 2], images=False, height=4, width=4, pieces={"L": 2, "I": 2})
    assert small
    assert {i.difficulty for i in small} <= {1, 2}
    assert all("Target rectangle with " in i.desc for i in small)
    with pytest.raises(ValueError, match="cannot tile"):
        build_visual_tiling([2], images=False, height=2, width=2, pieces={"Z": 1})
    with pytest.raises(ValueError, match="at most 6"):
        build_visual_tiling([2], images=False, height=4, width=8, pieces={"O": 8})
