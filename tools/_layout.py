"""Facts about the papercraft repository layout that the developer tools share.

The layout itself is the contract in ``DESIGN.md`` ("Repository layout" and "Rules of the house"):
one distribution per ``packages/<name>/``, named ``papercraft-<name>`` and importable as
``papercraft.<name>`` from a PEP 420 namespace, method packages depending on the core by a version
range. This module holds the names, the small parsers (TOML, requirements, version specifiers) and
the helpers that :mod:`tools.new_package`, :mod:`tools.check_layout` and
:mod:`tools.changed_packages` all need. It uses the standard library only and runs on Python 3.10.
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "CORE",
    "CORE_DIST",
    "CORE_REQUIREMENT",
    "DIST_PREFIX",
    "METHODS",
    "METHOD_PACKAGES",
    "NAMESPACE",
    "REPO_ROOT",
    "TORCH_REQUIREMENT",
    "MethodInfo",
    "Requirement",
    "dist_name",
    "load_toml",
    "loads_toml",
    "normalize_dist_name",
    "package_dirs",
    "parse_requirement",
    "read_version",
    "specifiers_allow",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
NAMESPACE = "papercraft"
CORE = "core"
DIST_PREFIX = "papercraft-"
CORE_DIST = "papercraft-core"
# What a method package's published metadata asks of the core and of torch (DESIGN.md rule 2).
CORE_REQUIREMENT = "papercraft-core>=0.1,<0.2"
TORCH_REQUIREMENT = "torch>=2.4"


@dataclass(frozen=True)
class MethodInfo:
    """One research method that becomes a package.

    Args:
        summary (str): one-line description, used as the default package description.
        paper (str): the paper's title.
        arxiv (str): the arXiv identifier, e.g. ``"2405.05254"``.
    """

    summary: str
    paper: str
    arxiv: str

    @property
    def url(self) -> str:
        """The paper's arXiv abstract page."""
        return f"https://arxiv.org/abs/{self.arxiv}"


METHODS: dict[str, MethodInfo] = {
    "yoco": MethodInfo(
        "YOCO: a decoder-decoder language model that caches key-value pairs once.",
        "You Only Cache Once: Decoder-Decoder Architectures for Language Models",
        "2405.05254",
    ),
    "svdr": MethodInfo(
        "SVDR: semi-parametric retrieval with a binary bag-of-tokens index and vocabulary-space embeddings.",
        "Semi-parametric Vocabulary Disentangled Retrieval",
        "2405.01924",
    ),
    "mhmoe": MethodInfo(
        "MH-MoE: a mixture-of-experts layer that routes sub-tokens of each token to experts.",
        "Multi-Head Mixture-of-Experts",
        "2404.15045",
    ),
    "mole": MethodInfo(
        "MoLE: learned hierarchical gating over several frozen LoRA adapters.",
        "Mixture of LoRA Experts",
        "2404.13628",
    ),
    "longembed": MethodInfo(
        "LongEmbed: training-free context extension for embedding models and its benchmark.",
        "LongEmbed: Extending Embedding Models for Long Context Retrieval",
        "2404.12096",
    ),
    "vot": MethodInfo(
        "Visualization-of-Thought: spatial-reasoning tasks, prompts, parsers and evaluation.",
        "Mind's Eye of LLMs: Visualization-of-Thought Elicits Spatial Reasoning in Large Language Models",
        "2404.03622",
    ),
    "se2": MethodInfo(
        "Se²: sequential, LLM-feedback-trained example selection for in-context learning.",
        "Se²: Sequential Example Selection for In-Context Learning",
        "2402.13874",
    ),
    "wavllm": MethodInfo(
        "WavLLM: a dual-encoder speech LLM with a prompt-aware LoRA weight adapter.",
        "WavLLM: Towards Robust and Adaptive Speech Large Language Model",
        "2404.00656",
    ),
    "visionprefer": MethodInfo(
        "VisionPrefer: MLLM-annotated preference data, the VP-Score reward model and reward fine-tuning.",
        "Multimodal Large Language Model is a Human-Aligned Annotator for Text-to-Image Generation",
        "2404.15100",
    ),
}
METHOD_PACKAGES: tuple[str, ...] = tuple(METHODS)


def dist_name(name: str) -> str:
    """The distribution name of package directory ``name``: ``papercraft-<name>``."""
    return f"{DIST_PREFIX}{name}"


def normalize_dist_name(name: str) -> str:
    """Normalise a distribution name as PEP 503 does (lower case, runs of ``-_.`` become ``-``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def loads_toml(text: str) -> dict[str, Any]:
    """Parse TOML text with ``tomllib`` (Python >= 3.11) or ``tomli`` (Python 3.10).

    Args:
        text (str): the TOML document.

    Returns:
        dict[str, Any]: the parsed document.

    Raises:
        RuntimeError: on Python 3.10 when ``tomli`` is not installed.
        ValueError: when the text is not valid TOML.
    """
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib.loads(text)
    try:
        import tomli
    except ModuleNotFoundError as error:
        raise RuntimeError(
            "reading TOML on Python 3.10 needs the 'tomli' package (pip install tomli)"
        ) from error
    return tomli.loads(text)


def load_toml(path: Path) -> dict[str, Any]:
    """Read and parse a TOML file.

    Args:
        path (Path): the file to read.

    Returns:
        dict[str, Any]: the parsed document.

    Raises:
        ValueError: when the file is not valid TOML (the message names the file).
    """
    try:
        return loads_toml(path.read_text(encoding="utf-8"))
    except ValueError as error:  # tomllib.TOMLDecodeError is a ValueError
        raise ValueError(f"{path} is not valid TOML: {error}") from error


def package_dirs(root: Path) -> list[Path]:
    """The package directories under ``root/packages``, sorted by name.

    Every visible sub-directory counts (a directory without a pyproject.toml is a broken
    package, not something to skip); hidden directories and ``__pycache__`` are ignored.
    """
    packages = root / "packages"
    if not packages.is_dir():
        return []
    return sorted(
        path
        for path in packages.iterdir()
        if path.is_dir() and not path.name.startswith((".", "__"))
    )


def read_version(version_file: Path) -> str | None:
    """Return the string assigned to ``__version__`` in ``version_file``, or None if absent.

    The file is parsed, not imported, so a broken package cannot run code here.
    """
    try:
        tree = ast.parse(version_file.read_text(encoding="utf-8"), filename=str(version_file))
    except (OSError, SyntaxError):
        return None
    for node in tree.body:
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets = [node.target]
        value = getattr(node, "value", None)
        for target in targets:
            if (
                isinstance(target, ast.Name)
                and target.id == "__version__"
                and isinstance(value, ast.Constant)
                and isinstance(value.value, str)
            ):
                return value.value
    return None


@dataclass(frozen=True)
class Requirement:
    """The parts of a PEP 508 requirement string that the layout rules look at.

    Args:
        name (str): the distribution name, PEP 503-normalised.
        specifiers (tuple[tuple[str, str], ...]): ``(operator, version)`` pairs, e.g.
            ``(("==", "2.4.0"),)``; empty when any version is allowed.
    """

    name: str
    specifiers: tuple[tuple[str, str], ...]


_REQUIREMENT_RE = re.compile(
    r"""^\s*
    (?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)   # distribution name
    \s*(?:\[[^\]]*\])?                                      # extras
    \s*\(?(?P<spec>[^;@()]*)\)?                             # specifiers (optionally in parens)
    \s*(?:@[^;]*)?                                          # direct reference
    \s*(?:;.*)?$                                            # environment marker
    """,
    re.VERBOSE,
)
_SPECIFIER_RE = re.compile(r"^\s*(===|==|!=|~=|<=|>=|<|>)\s*([^\s,]+)\s*$")


def parse_requirement(text: str) -> Requirement:
    """Split a requirement string such as ``"torch[cuda]>=2.4,<3; python_version>'3.9'"``.

    Args:
        text (str): a PEP 508 requirement.

    Returns:
        Requirement: its normalised name and version specifiers.

    Raises:
        ValueError: when ``text`` is not a requirement.
    """
    match = _REQUIREMENT_RE.match(text)
    if match is None:
        raise ValueError(f"not a requirement string: {text!r}")
    specifiers: list[tuple[str, str]] = []
    for clause in match.group("spec").split(","):
        if not clause.strip():
            continue
        spec = _SPECIFIER_RE.match(clause)
        if spec is None:
            raise ValueError(f"bad version specifier {clause.strip()!r} in requirement {text!r}")
        specifiers.append((spec.group(1), spec.group(2)))
    return Requirement(normalize_dist_name(match.group("name")), tuple(specifiers))


def _release(version: str) -> tuple[int, ...]:
    """The numeric release segment of a version (``"3.10.2rc1"`` -> ``(3, 10, 2)``)."""
    parts: list[int] = []
    for piece in version.split("."):
        digits = re.match(r"\d+", piece)
        if digits is None:
            break
        parts.append(int(digits.group()))
        if digits.end() != len(piece):
            break
    return tuple(parts)


def _padded(
    left: tuple[int, ...], right: tuple[int, ...]
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    size = max(len(left), len(right))
    return left + (0,) * (size - len(left)), right + (0,) * (size - len(right))


def _satisfies(candidate: tuple[int, ...], operator: str, version: str) -> bool:
    """Whether release ``candidate`` satisfies one specifier clause (release segments only)."""
    if operator in ("==", "!=") and version.endswith(".*"):
        prefix = _release(version[:-2])
        matches = candidate[: len(prefix)] == prefix
        return matches if operator == "==" else not matches
    if operator == "===":
        return ".".join(map(str, candidate)) == version
    bound = _release(version)
    if not bound:
        raise ValueError(f"cannot read version {version!r}")
    have, want = _padded(candidate, bound)
    if operator == "~=":
        return have >= want and candidate[: len(bound) - 1] == bound[:-1]
    results = {
        "==": have == want,
        "!=": have != want,
        ">=": have >= want,
        "<=": have <= want,
        ">": have > want,
        "<": have < want,
    }
    return results[operator]


def specifiers_allow(specifiers: str, major: int, minor: int) -> bool:
    """Whether a version specifier set admits some release of Python ``major.minor``.

    Args:
        specifiers (str): e.g. ``">=3.10"`` or ``">=3.9,!=3.10.*"``.
        major (int): the major version to test.
        minor (int): the minor version to test.

    Returns:
        bool: True when at least one of ``major.minor.0`` … ``major.minor.50`` satisfies every
        clause.

    Raises:
        ValueError: when a clause cannot be read.
    """
    clauses: list[tuple[str, str]] = []
    for clause in specifiers.split(","):
        if not clause.strip():
            continue
        spec = _SPECIFIER_RE.match(clause)
        if spec is None:
            raise ValueError(f"bad version specifier {clause.strip()!r}")
        clauses.append((spec.group(1), spec.group(2)))
    return any(
        all(_satisfies((major, minor, micro), op, version) for op, version in clauses)
        for micro in range(51)
    )
