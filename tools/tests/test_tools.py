"""Tests of the developer tools: scaffolding, the layout check, CI package selection, bench pages.

Each scaffolding test works on a copy of a temporary repository root (the workspace pyproject, a
copy of ``packages/core`` and a freshly scaffolded ``packages/toymethod``, a name no real
package will take); nothing is written into the
real checkout.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tools import changed_packages, check_layout, collect_bench, new_package
from tools._layout import loads_toml, parse_requirement, read_version, specifiers_allow

REPO = Path(__file__).resolve().parents[2]
NAME = "toymethod"
_IGNORE = shutil.ignore_patterns("__pycache__", ".pytest_cache", ".mypy_cache", "*.pyc")


@pytest.fixture(scope="module")
def template_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("template")
    shutil.copy2(REPO / "pyproject.toml", root / "pyproject.toml")
    (root / "packages").mkdir()
    shutil.copytree(REPO / "packages" / "core", root / "packages" / "core", ignore=_IGNORE)
    assert new_package.main([NAME, "--root", str(root)]) == 0
    return root


@pytest.fixture
def repo(template_root: Path, tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(template_root, root, ignore=_IGNORE)
    return root


def _problems(root: Path, name: str = NAME) -> list[str]:
    return [p.message for p in check_layout.check_package(root / "packages" / name)]


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new), encoding="utf-8")


# --- new_package -------------------------------------------------------------------------------


def test_scaffold_follows_the_layout(repo: Path) -> None:
    assert _problems(repo) == []


def test_scaffold_writes_the_house_files(repo: Path) -> None:
    package = repo / "packages" / NAME
    files = {p.relative_to(package).as_posix() for p in package.rglob("*") if p.is_file()}
    source = f"src/papercraft/{NAME}"
    assert files == {
        "pyproject.toml",
        "README.md",
        "CHANGELOG.md",
        "benchmarks/README.md",
        "tests/conftest.py",
        "tests/test_smoke.py",
        *(f"{source}/{f}" for f in ("__init__.py", "_version.py", "py.typed", "cli.py", "demo.py")),
    }
    assert not (package / "src" / "papercraft" / "__init__.py").exists()
    project = loads_toml((package / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["name"] == f"papercraft-{NAME}"
    assert project["dynamic"] == ["version"]
    assert project["dependencies"] == ["papercraft-core>=0.1,<0.2", "torch>=2.4"]
    assert "pytest>=8" in project["optional-dependencies"]["test"]
    assert "Typing :: Typed" in project["classifiers"]
    assert project["entry-points"]["papercraft.commands"] == {
        NAME: f"papercraft.{NAME}.cli:command"
    }
    assert project["entry-points"]["papercraft.demos"] == {NAME: f"papercraft.{NAME}.demo:run_demo"}
    assert "Paper" not in project["urls"]  # not one of the nine methods: no paper to link
    assert read_version(package / source / "_version.py") == "0.1.0"
    readme = (package / "README.md").read_text(encoding="utf-8")
    headings = [line for line in readme.splitlines() if line.startswith("## ")]
    assert headings == [
        "## Install",
        "## Quickstart",
        "## Command line",
        "## Benchmarks",
        "## Limits",
    ]


def test_known_method_gets_its_paper_and_summary(tmp_path: Path) -> None:
    (tmp_path / "packages").mkdir()
    package = new_package.scaffold("yoco", tmp_path)
    project = loads_toml((package / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["urls"]["Paper"] == "https://arxiv.org/abs/2405.05254"
    assert project["description"].startswith("YOCO: a decoder-decoder language model")
    readme = (package / "README.md").read_text(encoding="utf-8")
    assert "[You Only Cache Once: Decoder-Decoder Architectures" in readme
    assert check_layout.check_package(package) == []


def test_scaffold_adds_only_the_workspace_source(repo: Path) -> None:
    before = loads_toml((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    after = loads_toml((repo / "pyproject.toml").read_text(encoding="utf-8"))
    assert after["tool"]["uv"]["sources"].pop(f"papercraft-{NAME}") == {"workspace": True}
    assert after == before


def test_generated_python_compiles_and_passes_ruff(repo: Path) -> None:
    package = repo / "packages" / NAME
    for path in package.rglob("*.py"):
        compile(path.read_text(encoding="utf-8"), str(path), "exec")
    config = ["--config", str(REPO / "pyproject.toml")]
    for command in (["check", *config, "--no-cache"], ["format", "--check", *config]):
        result = subprocess.run(
            [sys.executable, "-m", "ruff", *command, str(package)], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_generated_tests_pass(repo: Path) -> None:
    package = repo / "packages" / NAME
    env = {**os.environ, "PYTHONPATH": str(package / "src")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=package,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    passed = re.search(r"(\d+) passed", result.stdout)
    assert passed is not None
    assert int(passed.group(1)) >= 5, result.stdout


def test_generated_package_builds_a_namespace_wheel(repo: Path, tmp_path: Path) -> None:
    pytest.importorskip("build")
    pytest.importorskip("hatchling")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(tmp_path / "w"),
            str(repo / "packages" / NAME),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = (tmp_path / "w").glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = archive.read(f"papercraft_{NAME}-0.1.0.dist-info/entry_points.txt").decode()
    assert f"papercraft/{NAME}/py.typed" in names
    assert "papercraft/__init__.py" not in names
    assert f"{NAME} = papercraft.{NAME}.cli:command" in entry_points


def _package_listing(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "packages").iterdir())


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Yoco", "lowercase Python identifier"),
        ("my-pkg", "lowercase Python identifier"),
        ("9lives", "lowercase Python identifier"),
        ("_private", "lowercase Python identifier"),
        ("class", "not a keyword"),
        ("core", "reserved for the shared core"),
        (NAME, "already exists"),
    ],
)
def test_refuses_bad_names(repo: Path, name: str, expected: str) -> None:
    before = _package_listing(repo)
    with pytest.raises(ValueError, match=expected):
        new_package.scaffold(name, repo)
    assert _package_listing(repo) == before


def test_refuses_bad_descriptions_and_roots(repo: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="single line"):
        new_package.scaffold("svdr", repo, "two\nlines")
    with pytest.raises(ValueError, match="backslashes"):
        new_package.scaffold("svdr", repo, 'a """ b')
    with pytest.raises(ValueError, match="--root must be the repository root"):
        new_package.scaffold("svdr", tmp_path / "nowhere")
    assert not (repo / "packages" / "svdr").exists()


def test_cli_refusal_exits_2_with_a_message(repo: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "new_package.py"), "core", "--root", str(repo)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "NAME 'core' is reserved" in result.stderr


def test_a_failed_write_leaves_no_half_package(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A file and a folder of the same name: the second write fails after the first succeeded.
    monkeypatch.setattr(new_package, "render_package", lambda name, text: {"a": "x", "a/b": "y"})
    before = _package_listing(repo)
    with pytest.raises((FileExistsError, NotADirectoryError)):
        new_package.scaffold("svdr", repo)
    assert _package_listing(repo) == before


def test_workspace_source_edit_keeps_other_tables(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    original = (
        "[tool.uv.sources]\npapercraft-core = { workspace = true }\n# trailing comment\n\n"
        "[tool.ruff]\nline-length = 100\n"
    )
    pyproject.write_text(original, encoding="utf-8")
    report = new_package.add_workspace_source(pyproject, "papercraft-vot")
    assert report.startswith("added")
    data = loads_toml(pyproject.read_text(encoding="utf-8"))
    assert data["tool"]["uv"]["sources"] == {
        "papercraft-core": {"workspace": True},
        "papercraft-vot": {"workspace": True},
    }
    assert data["tool"]["ruff"] == {"line-length": 100}
    assert "already" in new_package.add_workspace_source(pyproject, "papercraft-vot")


def test_workspace_source_without_a_sources_table_prints_instructions(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    original = "[tool.uv]\nsources = { papercraft-core = { workspace = true } }\n"
    pyproject.write_text(original, encoding="utf-8")
    report = new_package.add_workspace_source(pyproject, "papercraft-vot")
    assert "by hand" in report
    assert "papercraft-vot = { workspace = true }" in report
    assert pyproject.read_text(encoding="utf-8") == original


# --- check_layout ------------------------------------------------------------------------------

_PKG = f"packages/{NAME}"
_SRC = f"{_PKG}/src/papercraft/{NAME}"


def _remove(relative: str) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        target = root / relative
        shutil.rmtree(target) if target.is_dir() else target.unlink()

    return apply


def _write(relative: str, text: str) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text, encoding="utf-8")

    return apply


def _replace(relative: str, old: str, new: str) -> Callable[[Path], None]:
    return lambda root: _edit(root / relative, old, new)


def _move(source: str, target: str) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        (root / target).parent.mkdir(parents=True, exist_ok=True)
        (root / source).rename(root / target)

    return apply


_DEPS = '"torch>=2.4",'
_BREAKAGES = {
    "no-pyproject": (_remove(f"{_PKG}/pyproject.toml"), "missing pyproject.toml"),
    "no-readme": (_remove(f"{_PKG}/README.md"), "missing README.md"),
    "no-changelog": (_remove(f"{_PKG}/CHANGELOG.md"), "missing CHANGELOG.md"),
    "no-tests": (_remove(f"{_PKG}/tests"), "missing tests/"),
    "no-test-file": (_remove(f"{_PKG}/tests/test_smoke.py"), "tests/ has no test_*.py"),
    "no-benchmarks": (_remove(f"{_PKG}/benchmarks"), "missing benchmarks/"),
    "no-init": (_remove(f"{_SRC}/__init__.py"), f"missing src/papercraft/{NAME}/__init__.py"),
    "no-py-typed": (_remove(f"{_SRC}/py.typed"), f"missing src/papercraft/{NAME}/py.typed"),
    "namespace-init": (_write(f"{_PKG}/src/papercraft/__init__.py", ""), "PEP 420 namespace"),
    "dist-name": (
        _replace(f"{_PKG}/pyproject.toml", f'name = "papercraft-{NAME}"', f'name = "{NAME}"'),
        f"distribution name must be 'papercraft-{NAME}', got '{NAME}'",
    ),
    "import-form": (
        _write(f"{_SRC}/bad.py", "import papercraft.svdr.index as idx\n"),
        "bad.py:1 imports papercraft.svdr",
    ),
    "from-namespace-form": (
        _write(f"{_PKG}/tests/test_bad.py", "import os\nfrom papercraft import core, mole\n"),
        "tests/test_bad.py:2 imports papercraft.mole",
    ),
    "nested-from-form": (
        _write(
            f"{_SRC}/lazy.py", "def f():\n    from papercraft.vot.tasks import x\n    return x\n"
        ),
        "lazy.py:2 imports papercraft.vot",
    ),
    "unparsable": (_write(f"{_SRC}/broken.py", "def (:\n"), "broken.py: cannot parse"),
    "torch-eq": (
        _replace(f"{_PKG}/pyproject.toml", _DEPS, '"torch==2.4.0",'),
        "exact torch pin 'torch==2.4.0' in dependencies",
    ),
    "torch-arbitrary-eq-extra": (
        _replace(
            f"{_PKG}/pyproject.toml", 'test = ["pytest>=8"', 'test = ["torch===2.4", "pytest>=8"'
        ),
        "exact torch pin 'torch===2.4' in optional-dependencies.test",
    ),
    "torch-compatible-patch": (
        _replace(f"{_PKG}/pyproject.toml", _DEPS, '"Torch ~= 2.4.1",'),
        "exact torch pin",
    ),
    "no-requires-python": (
        _replace(f"{_PKG}/pyproject.toml", 'requires-python = ">=3.10"\n', ""),
        "requires-python is missing",
    ),
    "requires-python-311": (
        _replace(
            f"{_PKG}/pyproject.toml", 'requires-python = ">=3.10"', 'requires-python = ">=3.11"'
        ),
        "excludes Python 3.10",
    ),
    "no-core-dependency": (
        _replace(f"{_PKG}/pyproject.toml", '"papercraft-core>=0.1,<0.2",', ""),
        "must depend on papercraft-core",
    ),
    "core-pinned": (
        _replace(f"{_PKG}/pyproject.toml", "papercraft-core>=0.1,<0.2", "papercraft-core==0.1.0"),
        "pins the core exactly",
    ),
    "no-version-file": (_remove(f"{_SRC}/_version.py"), "cannot read __version__ from src/"),
    "changelog-version": (
        _replace(f"{_SRC}/_version.py", '"0.1.0"', '"0.2.0"'),
        "no entry (a heading) for the current version 0.2.0",
    ),
}


@pytest.mark.parametrize("breakage", list(_BREAKAGES))
def test_check_layout_reports_each_breakage_once(repo: Path, breakage: str) -> None:
    apply, expected = _BREAKAGES[breakage]
    apply(repo)
    problems = _problems(repo)
    assert len(problems) == 1, problems
    assert expected in problems[0]


_ALLOWED = {
    "core-and-self-imports": _write(
        f"{_SRC}/ok.py",
        "import papercraft.core.attention\nfrom papercraft import core\n"
        f"from papercraft.{NAME} import cli\nfrom . import demo\nimport papercraftish\n",
    ),
    "torch-range": _replace(
        f"{_PKG}/pyproject.toml", _DEPS, "\"torch>=2.4,<3; sys_platform != 'win32'\","
    ),
    "torch-compatible-minor": _replace(f"{_PKG}/pyproject.toml", _DEPS, '"torch~=2.4",'),
    "torch-extras-unpinned": _replace(f"{_PKG}/pyproject.toml", _DEPS, '"torch[opt-einsum]",'),
    "requires-python-bounded": _replace(
        f"{_PKG}/pyproject.toml",
        'requires-python = ">=3.10"',
        'requires-python = ">=3.9,<4,!=3.9.*"',
    ),
    "changelog-brackets": _replace(
        f"{_PKG}/CHANGELOG.md", "## 0.1.0 — unreleased", "## [v0.1.0] - 2024-05-01"
    ),
    "test-in-subfolder": _move(f"{_PKG}/tests/test_smoke.py", f"{_PKG}/tests/unit/test_smoke.py"),
}


@pytest.mark.parametrize("variant", list(_ALLOWED))
def test_check_layout_accepts_allowed_variants(repo: Path, variant: str) -> None:
    _ALLOWED[variant](repo)
    assert _problems(repo) == []


def test_core_may_not_import_method_packages_and_needs_no_core_dependency(repo: Path) -> None:
    _write("packages/core/src/papercraft/core/bad.py", f"from papercraft.{NAME} import cli\n")(repo)
    problems = _problems(repo, "core")
    assert any(f"bad.py:1 imports papercraft.{NAME}" in message for message in problems)
    assert not any("must depend on papercraft-core" in message for message in problems)


def test_check_layout_cli_exit_codes(repo: Path, tmp_path: Path) -> None:
    shutil.rmtree(repo / "packages" / "core")  # keep the check independent of the core's progress
    script = [sys.executable, str(REPO / "tools" / "check_layout.py"), "--root", str(repo)]
    ok = subprocess.run(script, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "layout ok: 1 package(s) checked" in ok.stdout
    _remove(f"{_PKG}/README.md")(repo)
    _remove(f"{_PKG}/benchmarks")(repo)
    bad = subprocess.run(script, capture_output=True, text=True)
    assert bad.returncode == 1
    assert bad.stdout.splitlines() == [
        f"packages/{NAME}: missing README.md",
        f"packages/{NAME}: missing benchmarks/",
    ]
    (tmp_path / "empty").mkdir()
    assert check_layout.main(["--root", str(tmp_path / "empty")]) == 1


@pytest.mark.parametrize(
    ("spec", "allowed"),
    [
        (">=3.10", True),
        (">3.10", True),
        ("~=3.9", True),
        ("==3.10.*", True),
        (">=3.8,<3.11", True),
        ("<3.10", False),
        (">=3.11", False),
        ("~=3.9.0", False),
        ("!=3.10.*", False),
        (">=3.9,!=3.10.*", False),
    ],
)
def test_specifiers_allow_python_310(spec: str, allowed: bool) -> None:
    assert specifiers_allow(spec, 3, 10) is allowed


def test_parse_requirement_reads_names_extras_and_markers() -> None:
    req = parse_requirement("Torch_Vision[extra] >=0.19, <1 ; python_version >= '3.10'")
    assert req.name == "torch-vision"
    assert req.specifiers == ((">=", "0.19"), ("<", "1"))
    assert parse_requirement("peft @ https://example.org/peft.whl").specifiers == ()
    with pytest.raises(ValueError, match="bad version specifier"):
        parse_requirement("torch>=2.4,,2.5")


# --- changed_packages --------------------------------------------------------------------------

_AVAILABLE = ["core", "mole", "svdr", "yoco"]


@pytest.mark.parametrize(
    ("changed", "expected"),
    [
        (["packages/yoco/src/papercraft/yoco/model.py"], ["yoco"]),
        (["packages/yoco/README.md", "./packages/svdr/x.py", "docs/index.md"], ["svdr", "yoco"]),
        (["packages/core/src/papercraft/core/rope.py"], _AVAILABLE),
        (["noxfile.py"], _AVAILABLE),
        (["pyproject.toml"], _AVAILABLE),
        ([".github/workflows/ci.yml"], _AVAILABLE),
        (["shared/fixtures/a.txt"], _AVAILABLE),
        (["packages/yoco/pyproject.toml", "tools/check_layout.py"], ["yoco"]),
        (["packages/removed/x.py", "packages/README.md", "docs/architecture.md"], []),
        (["packages/mole/pyproject.toml.bak"], ["mole"]),
        ([], []),
    ],
)
def test_select_packages(changed: list[str], expected: list[str]) -> None:
    assert changed_packages.select_packages(changed, _AVAILABLE) == expected


def _git(root: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.org",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.org",
    }
    result = subprocess.run(["git", *args], cwd=root, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_changed_packages_against_a_git_base(tmp_path: Path) -> None:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    root = tmp_path / "git-repo"
    for name in ("core", "svdr", "yoco"):
        _write(f"packages/{name}/pyproject.toml", "")(root)
    _git(root, "init", "-q", "-b", "main")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "base")
    _git(root, "checkout", "-q", "-b", "feature")
    _write("packages/svdr/src/new.py", "x = 1\n")(root)
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "change svdr")
    assert changed_packages.git_changed_files("main", "HEAD", root) == ["packages/svdr/src/new.py"]
    output = tmp_path / "github_output"
    args = ["--base", "main", "--root", str(root), "--github-output", str(output)]
    assert changed_packages.main(args) == 0
    assert output.read_text(encoding="utf-8") == 'packages=["svdr"]\n'
    # No previous commit (GitHub sends zeros) or an unknown base: test everything.
    assert changed_packages.git_changed_files("0" * 40, "HEAD", root) is None
    assert changed_packages.git_changed_files("no-such-ref", "HEAD", root) is None


# --- collect_bench -----------------------------------------------------------------------------


def test_collect_bench_renders_reports(tmp_path: Path) -> None:
    results = tmp_path / "packages" / "yoco" / "benchmarks" / "results"
    results.mkdir(parents=True)
    report = {
        "name": "prefill",
        "machine": {"cpu": "2 cores", "torch": "2.13"},
        "command": "nox -s \"bench(package='yoco')\"",
        "rows": [{"length": 4096, "ratio": 1.43219}, {"length": 8192, "note": "a|b"}],
    }
    (results / "prefill.json").write_text(json.dumps(report), encoding="utf-8")
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "summary.json").write_text(
        '{"package": "svdr", "index_seconds": 12.5}', encoding="utf-8"
    )
    (extra / "broken.json").write_text("{", encoding="utf-8")
    output = tmp_path / "out" / "bench.md"
    assert collect_bench.main([str(extra), "--root", str(tmp_path), "--output", str(output)]) == 0
    page = output.read_text(encoding="utf-8")
    assert page.index("## extra") < page.index("## svdr") < page.index("## yoco")
    assert "Machine: cpu: 2 cores, torch: 2.13" in page
    assert (
        "| length | ratio | note |\n|---|---|---|\n| 4096 | 1.432 |  |\n| 8192 |  | a\\|b |" in page
    )
    assert "| index_seconds | 12.5 |" in page
    assert "_Unreadable report `broken.json`" in page


def test_collect_bench_without_reports(tmp_path: Path) -> None:
    assert collect_bench.render_page(collect_bench.find_reports(tmp_path, [])) == (
        "_No benchmark reports found._\n"
    )
    with pytest.raises(ValueError, match="DIR must be a directory"):
        collect_bench.find_reports(tmp_path, [tmp_path / "missing"])
