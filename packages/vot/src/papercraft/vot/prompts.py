"""Tasks, prompt settings and the official prompt templates, byte-exact.

The templates under ``templates/`` are the official files of
microsoft/visualization-of-thought (see ``templates/NOTICE``), kept byte for byte — CRLF line
ends, the ``continous`` typo and all; :func:`template_bytes` returns them and the tests compare
their SHA-256 digests with the official ones. They are read as Python's text mode reads them
(universal newlines), which is what the official ``gen_puzzle.py`` fills with
:class:`string.Template`.

Settings (paper Section 4):

- ``cot`` — zero-shot chain of thought: ``Let's think step by step.``
- ``no-viz`` — ``Don't use visualization. Let's think step by step.``
- ``vot`` — ``Visualize the state after each reasoning step.``
- ``multimodal-cot`` — the map or board as an image (chat messages with image parts) + CoT. The
  official route-planning file for this setting is identical to its task description, so it
  carries no CoT line; it is reproduced as is.

Every prompt is the instance's task description (``desc``, the filled ``desc-text`` template
stripped, as in the official JSONL) followed by the setting's suffix; :func:`text_prompt` builds
it from ``desc`` alone, so it works on the official released files too. The official route
planning CoT and w/o-visualization templates say "continous road" where the description and
the VoT template say "continuous"; ``fix_typo=True`` sends "continuous" in every setting.

Natural-language navigation has no official templates: its prompt is the question, a newline
and the setting's line.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from importlib import resources
from string import Template
from typing import Any

__all__ = [
    "OFFICIAL_TASKS",
    "SETTINGS",
    "SETTING_LINES",
    "TASKS",
    "fill_template",
    "load_template",
    "multimodal_messages",
    "regex_patterns",
    "resolve_setting",
    "resolve_task",
    "template_bytes",
    "text_prompt",
]

#: the four tasks, by their official folder names.
TASKS: tuple[str, ...] = (
    "route-planning",
    "next-step-prediction",
    "visual-tiling",
    "natural-language-navigation",
)
#: the tasks with official template files.
OFFICIAL_TASKS: tuple[str, ...] = TASKS[:3]
_TASK_ALIASES = {
    "route": "route-planning",
    "next-step": "next-step-prediction",
    "tiling": "visual-tiling",
    "nl-nav": "natural-language-navigation",
    "nl-navigation": "natural-language-navigation",
}
#: the prompt settings.
SETTINGS: tuple[str, ...] = ("cot", "no-viz", "vot", "multimodal-cot")
_SETTING_ALIASES = {
    "w/o-viz": "no-viz",
    "disable-viz": "no-viz",
    "0-shot-cot": "cot",
    "0-shot-disable-viz": "no-viz",
    "0-shot-vot": "vot",
    "0-shot-multimodal-cot": "multimodal-cot",
}
#: the line each text setting adds.
SETTING_LINES: dict[str, str] = {
    "cot": "Let's think step by step.",
    "no-viz": "Don't use visualization. Let's think step by step.",
    "vot": "Visualize the state after each reasoning step.",
}
_FILES = {
    "cot": "0-shot-cot.txt",
    "no-viz": "0-shot-disable-viz.txt",
    "vot": "0-shot-vot",
    "multimodal-cot": "0-shot-multimodal-cot.txt",
    "desc-text": "desc-text.txt",
    "desc-multimodal": "desc-multimodal.txt",
    "llama-regex-patterns": "llama-regex-patterns.txt",
}
_TYPO, _FIXED = "continous", "continuous"


def resolve_task(task: str) -> str:
    """The canonical task name (``route``, ``next-step``, ``tiling``, ``nl-nav`` accepted)."""
    name = _TASK_ALIASES.get(task, task) if isinstance(task, str) else task
    if name not in TASKS:
        raise ValueError(f"task must be one of {TASKS} (or {sorted(_TASK_ALIASES)}), got {task!r}")
    return str(name)


def resolve_setting(setting: str) -> str:
    """The canonical setting name (the official file stems and ``w/o-viz`` accepted)."""
    name = _SETTING_ALIASES.get(setting, setting) if isinstance(setting, str) else setting
    if name not in SETTINGS:
        raise ValueError(
            f"setting must be one of {SETTINGS} (or {sorted(_SETTING_ALIASES)}), got {setting!r}"
        )
    return str(name)


def _official(task: str) -> str:
    name = resolve_task(task)
    if name not in OFFICIAL_TASKS:
        raise ValueError(f"task {name!r} has no official template files")
    return name


def template_bytes(task: str, name: str) -> bytes:
    """The raw bytes of an official file.

    Args:
        task (str): one of :data:`OFFICIAL_TASKS` (or an alias).
        name (str): a setting, ``"desc-text"``, ``"desc-multimodal"`` or
            ``"llama-regex-patterns"`` (navigation tasks only).

    Returns:
        bytes: the file, unchanged.
    """
    task = _official(task)
    key = name if name in _FILES else resolve_setting(name)
    if key == "llama-regex-patterns" and task == "visual-tiling":
        raise ValueError("the official visual-tiling task has no llama-regex-patterns file")
    root = resources.files("papercraft.vot") / "templates" / task / _FILES[key]
    return root.read_bytes()


@cache
def load_template(task: str, name: str) -> str:
    """An official file as Python's text mode reads it (``\\r\\n`` and ``\\r`` become ``\\n``)."""
    text = template_bytes(task, name).decode("utf-8")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def fill_template(task: str, name: str, fields: dict[str, str], *, fix_typo: bool = False) -> str:
    """Fill an official template with :class:`string.Template` (as ``gen_puzzle.py`` does).

    Raises:
        ValueError: naming the placeholders missing from ``fields``.
    """
    text = load_template(task, name)
    if fix_typo:
        text = text.replace(_TYPO, _FIXED)
    try:
        return Template(text).substitute(fields)
    except KeyError as error:
        raise ValueError(f"fields is missing the placeholder {error.args[0]!r}") from None


@cache
def _text_suffix(task: str, setting: str) -> tuple[str, bool]:
    """(what the setting template adds after the description, whether it has the typo)."""
    desc = load_template(task, "desc-text").rstrip()
    full = load_template(task, setting)
    typo = _TYPO in full
    full = full.replace(_TYPO, _FIXED)
    if not full.startswith(desc):
        raise RuntimeError(f"the {task} {setting} template does not extend its description")
    return full[len(desc) :], typo


def text_prompt(task: str, setting: str, desc: str, *, fix_typo: bool = False) -> str:
    """The prompt of a text setting, from the instance's task description.

    Equal to filling the official setting template with the instance's fields (tested).

    Args:
        task (str): a task (or alias).
        setting (str): ``cot``, ``no-viz`` or ``vot`` (or an alias).
        desc (str): the instance's ``desc``.
        fix_typo (bool): send "continuous" where the official template says "continous".
            Default: False.

    Returns:
        str: the prompt.
    """
    task, setting = resolve_task(task), resolve_setting(setting)
    if setting == "multimodal-cot":
        raise ValueError("setting 'multimodal-cot' is a chat prompt; use multimodal_messages")
    if not isinstance(desc, str) or not desc:
        raise ValueError("desc must be a non-empty str")
    if task not in OFFICIAL_TASKS:
        return f"{desc}\n{SETTING_LINES[setting]}"
    suffix, typo = _text_suffix(task, setting)
    if typo and not fix_typo:
        desc = desc.replace(_FIXED, _TYPO)
    return desc + suffix


def _dummy_fields(task: str) -> dict[str, str]:
    part = json.dumps({"type": "text", "text": "x"})
    names = [
        "ENCODED_MAP",
        "ENCODED_RECTANGLE",
        "INITIAL_MAP",
        "NAVIGATING_INSTRUCTIONS",
        "EMPTY_SQUARES",
        "TARGET_RECTANGLE",
        "PROVIDED_POLYOMINOES",
        "POLYOMINO_VARIATIONS",
        "CHOSED_POLYOMINO",
        "OPTIONS",
    ]
    fields = dict.fromkeys(names, "x")
    for name in (
        "MULTIMODAL_NAVAIGATING_INSTRUCTION",
        "MULTIMODAL_PROVIDED_POLYOMINOES",
        "MULTIMODAL_POLYOMINO_VARIATIONS",
        "MULTIMODAL_OPTIONS",
    ):
        fields[name] = part
    return fields


@cache
def _multimodal_suffix(task: str) -> str:
    """The content parts (JSON) the multimodal-CoT template adds after the description's."""
    fields = _dummy_fields(task)
    desc = json.loads(fill_template(task, "desc-multimodal", fields))
    full = json.loads(fill_template(task, "multimodal-cot", fields))
    head, tail = full[-1]["content"], desc[-1]["content"]
    if full[:-1] != desc[:-1] or head[: len(tail)] != tail:
        raise RuntimeError(f"the {task} multimodal-cot template does not extend its description")
    return json.dumps(head[len(tail) :])


def multimodal_messages(
    task: str, desc_multimodal: list[dict[str, Any]], *, fix_typo: bool = False
) -> list[dict[str, Any]]:
    """The chat messages of the multimodal-CoT setting, from the instance's ``desc_multimodal``.

    Args:
        task (str): a task (or alias).
        desc_multimodal (list[dict]): the instance's OpenAI-style messages (text and image
            parts).
        fix_typo (bool): replace "continous" in text parts. Default: False.

    Returns:
        list[dict]: a new message list (the input is not modified).
    """
    task = resolve_task(task)
    if not isinstance(desc_multimodal, list) or not desc_multimodal:
        raise ValueError("desc_multimodal must be a non-empty list of chat messages")
    messages = copy.deepcopy(desc_multimodal)
    last = messages[-1]
    if not isinstance(last, dict) or not isinstance(last.get("content"), list):
        raise ValueError("desc_multimodal[-1] must be a message whose content is a list of parts")
    if task in OFFICIAL_TASKS:
        last["content"].extend(json.loads(_multimodal_suffix(task)))
    else:
        last["content"].append({"type": "text", "text": SETTING_LINES["cot"]})
    if fix_typo:
        for message in messages:
            for part in message.get("content", []):
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    part["text"] = part["text"].replace(_TYPO, _FIXED)
    return messages


def regex_patterns(task: str, kind: str = "gpt") -> list[str] | None:
    """Answer patterns: None for the built-in (GPT-centric) ones, or the official Llama file's.

    Args:
        task (str): a task (or alias).
        kind (str): ``"gpt"`` (default patterns) or ``"llama"`` (route planning and next-step
            prediction only, as officially released).

    Returns:
        list[str] | None: the override patterns, one per line of the official file.
    """
    task = resolve_task(task)
    if kind == "gpt":
        return None
    if kind != "llama":
        raise ValueError(f"kind must be 'gpt' or 'llama', got {kind!r}")
    if task not in ("route-planning", "next-step-prediction"):
        raise ValueError(f"task {task!r} has no official llama patterns")
    text = load_template(task, "llama-regex-patterns")
    return [line.strip() for line in text.split("\n") if line.strip()]
