"""Tests of papercraft.vot.prompts: the official templates (golden digests) and prompt building."""

from __future__ import annotations

import hashlib
import json
import re
from functools import lru_cache
from string import Template

import pytest

from papercraft.vot.dataset import build_next_step, build_route_planning, build_visual_tiling
from papercraft.vot.prompts import (
    SETTING_LINES,
    SETTINGS,
    fill_template,
    load_template,
    multimodal_messages,
    regex_patterns,
    resolve_setting,
    resolve_task,
    template_bytes,
    text_prompt,
)

# SHA-256 of the files under src/ of microsoft/visualization-of-thought at commit 4bff3ac.
OFFICIAL_SHA256 = {
    ("next-step-prediction", "cot"): "f554374eb21a4e17d63bdd64ab37509c1078497cd29803d17d1f77748beffa05",
    ("next-step-prediction", "no-viz"): "b9b25ae6df5a2643e97c8b06ceb123f86c0507a0d96b372da97168dd4fb0a7ac",
    ("next-step-prediction", "multimodal-cot"): "592cf5712d5804eefa33f7f9f5bc6635779b03f4503dabcd16fb60cd4a71311b",
    ("next-step-prediction", "vot"): "99cc29eb7ed0d3cc72e6b4efdec8904b1c745adc8814a374427275ff1abf2a28",
    ("next-step-prediction", "desc-multimodal"): "844be339548ec02e4780aaaa23c2b8c5f65da54062d03186be9028eddd3a4b61",
    ("next-step-prediction", "desc-text"): "d15fd3b45a74c33cd887b7f8b7044ab9a2352bd682bcf05fa2a78a18de0bbb49",
    ("next-step-prediction", "llama-regex-patterns"): "10877fdfe281134c2b54ef9d5a606749d04c602141f28dbae781f87ea7eb2f10",
    ("route-planning", "cot"): "1e9739737177971a0ca173a5fcb34d8ad485f97bee6c2608507eb8e80e5b32ec",
    ("route-planning", "no-viz"): "03343a54bb622b40379ee16060850956efb849a4c22dc876da24af5e775bbdde",
    ("route-planning", "multimodal-cot"): "213b883c87b30a51e00b990b019004a6618456e9081d5b995b29750e5687dfac",
    ("route-planning", "vot"): "a1efeae6a034b8564ea234f81f7fbaec21e8de998d6c077b4bcd8e84672a586d",
    ("route-planning", "desc-multimodal"): "213b883c87b30a51e00b990b019004a6618456e9081d5b995b29750e5687dfac",
    ("route-planning", "desc-text"): "a5e1c45be3676c6c0692b2775b47cff8e7dfbc72a927a6b095cf64c567ead3b3",
    ("route-planning", "llama-regex-patterns"): "59223768e65610b919900842bc11da4935e5ca11d133c3648fa52f45c6d3c909",
    ("visual-tiling", "cot"): "9ce7170c7f34e600c159d84dab4545ec46645bf9581f3dc15339eaaee9bdfed7",
    ("visual-tiling", "no-viz"): "e162c835878697c31caa949e4aaa24befc0336c02ab22056f1cb3d86cda629a5",
    ("visual-tiling", "multimodal-cot"): "868f71d278f214156bd48bffd71dfeafd3aa46986344f9130d78ebf22cab20e0",
    ("visual-tiling", "vot"): "00cf100158cf0a3edb95e85fc5954f08a456f6d7407aab07108cda87b16b8414",
    ("visual-tiling", "desc-multimodal"): "f553cf624dd0bdcc775aecce08616fcd8ac02e14146475c2efda40f91516cb6d",
    ("visual-tiling", "desc-text"): "5b30800bab644d21a013b0e77d420a0417b2bb1ee7c32b23ee7f6181666bf22e",
}  # fmt: skip


@pytest.mark.parametrize(("task", "name"), sorted(OFFICIAL_SHA256))
def test_templates_are_byte_exact(task: str, name: str) -> None:
    data = template_bytes(task, name)
    assert hashlib.sha256(data).hexdigest() == OFFICIAL_SHA256[(task, name)]
    assert "\r" not in load_template(task, name)  # read as Python's text mode reads it


def test_official_quirks_are_kept() -> None:
    assert b"\r\n" in template_bytes("route-planning", "cot")  # CRLF files
    assert b"\r\n" not in template_bytes("visual-tiling", "no-viz")
    for setting in ("cot", "no-viz"):
        assert "continous road" in load_template("route-planning", setting)
    assert "continuous road" in load_template("route-planning", "vot")
    assert "continous" not in load_template("route-planning", "desc-text")
    # the official route-planning multimodal CoT file is the bare description (no CoT line)
    assert template_bytes("route-planning", "multimodal-cot") == template_bytes(
        "route-planning", "desc-multimodal"
    )


@lru_cache(maxsize=1)
def _instances() -> list:  # type: ignore[type-arg]
    def encode(rows: object) -> str:
        return hashlib.sha256(repr(rows).encode()).hexdigest()

    return (
        build_route_planning([2, 5], images=encode)[:9]
        + build_next_step([3, 6], images=encode)[:9]
        + build_visual_tiling([2, 3], images=encode)[:6]
        + build_visual_tiling([3], images=encode)[-3:]
    )


def _fields(inst) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Recover the template fields of a generated instance from its description."""
    desc = inst.desc
    if inst.task == "visual-tiling":
        _head, _, rest = desc.partition("Target rectangle with ")
        empty, _, rest = rest.partition(" empty squares:\n")
        target, _, rest = rest.partition("\n\nProvided polyominoes:\n")
        provided, _, rest = rest.partition("\n-------------------------\n")
        variations, _, rest = rest.partition("\n\nTo fit all the provided polyominoes")
        chosen = rest.split("what's the correct variation of ")[1].split("?\n")[0]
        options = rest.split("?\n", 1)[1]
        return {"EMPTY_SQUARES": empty, "TARGET_RECTANGLE": target,
                "PROVIDED_POLYOMINOES": provided, "POLYOMINO_VARIATIONS": variations,
                "CHOSED_POLYOMINO": chosen, "OPTIONS": options}  # fmt: skip
    grid = re.search(r"```\n(.*?)\n```", desc, re.DOTALL).group(1)  # type: ignore[union-attr]
    fields = {"INITIAL_MAP": grid}
    if inst.task == "next-step-prediction":
        moves = desc.split("you made following movements: \n")[1].split("\n\n")[0]
        fields["NAVIGATING_INSTRUCTIONS"] = moves
    return fields


@pytest.mark.parametrize("setting", ["cot", "no-viz", "vot"])
@pytest.mark.parametrize("fix_typo", [False, True])
def test_text_prompt_equals_filling_the_official_template(setting: str, fix_typo: bool) -> None:
    for inst in _instances():
        raw = load_template(inst.task, setting)
        if fix_typo:
            raw = raw.replace("continous", "continuous")
        expected = Template(raw).substitute(_fields(inst))
        assert text_prompt(inst.task, setting, inst.desc, fix_typo=fix_typo) == expected
        assert fill_template(inst.task, "desc-text", _fields(inst)).strip() == inst.desc


def test_typo_switch_and_setting_lines() -> None:
    inst = build_route_planning([2], images=False)[0]
    default = text_prompt("route", "cot", inst.desc)
    fixed = text_prompt("route", "cot", inst.desc, fix_typo=True)
    assert "continous road" in default
    assert "continous" not in fixed
    assert default.endswith("\nLet's think step by step.")
    assert text_prompt("route", "vot", inst.desc).endswith(
        "🏢.\n\nVisualize the state after each reasoning step."
    )
    assert text_prompt("nl-nav", "no-viz", "Q?") == "Q?\n" + SETTING_LINES["no-viz"]
    with pytest.raises(ValueError, match="multimodal_messages"):
        text_prompt("route", "multimodal-cot", inst.desc)
    with pytest.raises(ValueError, match="desc"):
        text_prompt("route", "cot", "")


def test_multimodal_messages_extend_the_description() -> None:
    for inst in _instances():
        messages = multimodal_messages(inst.task, inst.desc_multimodal)
        assert messages[:-1] == inst.desc_multimodal[:-1]
        base = inst.desc_multimodal[-1]["content"]
        added = messages[-1]["content"][len(base) :]
        assert messages[-1]["content"][: len(base)] == base
        if inst.task == "route-planning":
            assert added == []  # as officially: no CoT line in this file
        else:
            assert added == [{"type": "text", "text": "Let's think step by step."}]
        assert len(inst.desc_multimodal[-1]["content"]) == len(base)  # input untouched
        json.dumps(messages)


def test_resolution_and_patterns() -> None:
    assert resolve_task("tiling") == "visual-tiling"
    assert resolve_setting("w/o-viz") == "no-viz"
    assert resolve_setting("0-shot-vot") == "vot"
    assert set(SETTINGS) == {"cot", "no-viz", "vot", "multimodal-cot"}
    with pytest.raises(ValueError, match="task must be one of"):
        resolve_task("maze")
    with pytest.raises(ValueError, match="setting must be one of"):
        resolve_setting("tot")
    assert regex_patterns("route") is None
    assert len(regex_patterns("route", "llama") or []) == 8
    assert len(regex_patterns("next-step", "llama") or []) == 16
    with pytest.raises(ValueError, match="no official llama"):
        regex_patterns("tiling", "llama")
    with pytest.raises(ValueError, match="placeholder"):
        fill_template("route", "desc-text", {})
