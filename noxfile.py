"""nox sessions for the papercraft monorepo, parametrized over the packages under packages/.

    nox -s tests                         # every package, each in its own venv
    nox -s "tests(package='core')"       # one package
    nox -s lint                          # ruff check + ruff format --check + tools/check_layout.py
    nox -s "typecheck(package='core')"   # mypy, strict
    nox -s "build(package='core')"       # sdist + wheel, twine check, install the wheel alone
    nox -s demo                          # install everything, run `papercraft demo`
    nox -s "bench(package='core')"       # the package's benchmarks/ scripts
    nox -s docs                          # mkdocs build --strict
    nox -s "tests_cuda(package='core')"  # CUDA-marked tests (GPU runners)

Torch: published metadata asks for a range (``torch>=2.4``), which on a machine with no torch makes
a resolver download whatever build the platform takes (on Linux, a multi-GB CUDA build). When pip
on this machine is configured with a find-links folder that holds a torch wheel for this Python
(a CPU wheel kept on disk), every session pins torch to that wheel and hands the folder to uv
(``UV_FIND_LINKS``). ``PAPERCRAFT_TORCH`` overrides the requirement (e.g. ``torch==2.5.1``), and
``PAPERCRAFT_TORCH=none`` disables the pin.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from functools import lru_cache
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
PACKAGES = sorted(p.name for p in (ROOT / "packages").iterdir() if (p / "pyproject.toml").is_file())
# core first, so `nox -s tests` fails fast on the foundation
PACKAGES = ["core", *[p for p in PACKAGES if p != "core"]] if "core" in PACKAGES else PACKAGES

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["lint", "tests"]
nox.options.error_on_missing_interpreters = True

DOCS_REQUIREMENTS = ["mkdocs>=1.6", "mkdocs-material>=9.5", "mkdocstrings[python]>=0.26"]


# ----------------------------------------------------------------------------------------------
# torch: a local CPU wheel when pip is configured with one, else whatever the platform resolves
# ----------------------------------------------------------------------------------------------
def _pip_find_links() -> list[Path]:
    """Folders that pip's configuration names as find-links (any scope)."""
    try:
        out = subprocess.run(
            [sys.executable, "-m", "pip", "config", "list"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    folders: list[Path] = []
    for line in out.splitlines():
        key, _, value = line.partition("=")
        if key.strip().endswith("find-links"):
            for item in value.strip().strip("'\"").split():
                path = Path(item.removeprefix("file://"))
                if path.is_dir() and path not in folders:
                    folders.append(path)
    return folders


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", version.split("+")[0]))


@lru_cache(maxsize=1)
def _torch_setup() -> tuple[list[str], dict[str, str]]:
    """(requirements to add to every install, environment for uv)."""
    override = os.environ.get("PAPERCRAFT_TORCH")
    if override:
        return ([] if override.lower() == "none" else [override]), {}
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    for folder in _pip_find_links():
        wheels = [
            w
            for w in folder.glob("torch-*.whl")
            if f"-{tag}-" in w.name and ("linux" in w.name) == sys.platform.startswith("linux")
        ]
        if wheels:
            best = max(wheels, key=lambda w: _version_key(w.name.split("-")[1]))
            version = best.name.split("-")[1]
            return [f"torch=={version}"], {"UV_FIND_LINKS": str(folder)}
    return [], {}


def _install(session: nox.Session, *requirements: str) -> None:
    pins, env = _torch_setup()
    session.env.update(env)
    session.install(*pins, *requirements)


def _package_requirements(package: str, extras: str = "") -> list[str]:
    """The package (with extras) plus the core from the checkout: nothing else of the repo."""
    spec = f"{ROOT / 'packages' / package}" + (f"[{extras}]" if extras else "")
    if package == "core":
        return [spec]
    return [str(ROOT / "packages" / "core"), spec]


def _extras(package: str) -> set[str]:
    """The optional-dependency groups a package declares."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    with (ROOT / "packages" / package / "pyproject.toml").open("rb") as fh:
        project = tomllib.load(fh).get("project", {})
    return set(project.get("optional-dependencies", {}))


def _import_name(package: str) -> str:
    return f"papercraft.{package}"


# ----------------------------------------------------------------------------------------------
# sessions
# ----------------------------------------------------------------------------------------------
@nox.session
@nox.parametrize("package", PACKAGES)
def tests(session: nox.Session, package: str) -> None:
    """Run one package's tests in a venv holding only it, the core and its test extras."""
    _install(session, *_package_requirements(package, "test"))
    session.run(
        "pytest",
        str(ROOT / "packages" / package / "tests"),
        "-p",
        "no:cacheprovider",
        *session.posargs,
    )


@nox.session
@nox.parametrize("package", PACKAGES)
def tests_cuda(session: nox.Session, package: str) -> None:
    """Only the CUDA-marked tests (run on a GPU runner with a CUDA torch)."""
    session.install(*_package_requirements(package, "test"))
    session.run(
        "pytest", str(ROOT / "packages" / package / "tests"), "-m", "cuda", *session.posargs
    )


@nox.session(name="tools")
def tools_tests(session: nox.Session) -> None:
    """Tests of the developer tools (scaffolder, layout check, changed-package detection)."""
    _install(
        session,
        "pytest>=8",
        "ruff>=0.6",
        "build>=1.2",
        "hatchling>=1.24",
        "tomli>=2; python_version < '3.11'",
        str(ROOT / "packages" / "core"),  # the scaffolded package's own tests import the core
    )
    session.run("pytest", str(ROOT / "tools" / "tests"), "-p", "no:cacheprovider", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check, ruff format --check and the layout check."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", str(ROOT))
    session.run("ruff", "format", "--check", str(ROOT))
    session.run("python", str(ROOT / "tools" / "check_layout.py"), "--root", str(ROOT))


@nox.session
@nox.parametrize("package", PACKAGES)
def typecheck(session: nox.Session, package: str) -> None:
    """mypy (strict, root config) over the package's source."""
    _install(session, "mypy>=1.11", *_package_requirements(package, "test"))
    src = ROOT / "packages" / package / "src"
    session.env["MYPYPATH"] = str(src)
    session.run(
        "mypy",
        "--config-file",
        str(ROOT / "pyproject.toml"),
        str(src / "papercraft" / package),
        *session.posargs,
    )


def _check_wheel(session: nox.Session, wheel: Path, package: str) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        metadata_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = zf.read(metadata_name).decode()
    if "papercraft/__init__.py" in names:
        session.error(f"{wheel.name} ships papercraft/__init__.py: it would break the namespace")
    if not any(n.startswith(f"papercraft/{package}/") for n in names):
        session.error(f"{wheel.name} does not contain papercraft/{package}/")
    if not any(n.endswith(f"papercraft/{package}/py.typed") for n in names):
        session.error(f"{wheel.name} lacks py.typed")
    for line in meta.splitlines():
        if line.startswith("Requires-Dist:") and re.match(
            r"Requires-Dist:\s*torch\s*(==|===)", line
        ):
            session.error(f"{wheel.name} pins torch exactly ({line}); use a range")


@nox.session
@nox.parametrize("package", PACKAGES)
def build(session: nox.Session, package: str) -> None:
    """Build sdist + wheel, check metadata, then install the wheel ALONE into a clean venv."""
    session.install("build[uv]>=1.2", "twine>=5")
    out = ROOT / "dist" / package
    shutil.rmtree(out, ignore_errors=True)
    session.run(
        "python", "-m", "build", "--installer", "uv", "--outdir", str(out),
        str(ROOT / "packages" / package),
    )  # fmt: skip
    artifacts = sorted(out.iterdir())
    session.run("twine", "check", "--strict", *map(str, artifacts))
    (wheel,) = [a for a in artifacts if a.suffix == ".whl"]
    _check_wheel(session, wheel, package)

    find_links: list[str] = []
    if package != "core":  # the published core would come from PyPI; here, build it too
        core_out = ROOT / "dist" / "core"
        shutil.rmtree(core_out, ignore_errors=True)
        session.run(
            "python", "-m", "build", "--wheel", "--installer", "uv", "--outdir", str(core_out),
            str(ROOT / "packages" / "core"),
        )  # fmt: skip
        find_links = ["--find-links", str(core_out)]

    venv = Path(session.create_tmp()) / "clean-venv"
    shutil.rmtree(venv, ignore_errors=True)
    pins, env = _torch_setup()
    if find_links and "UV_FIND_LINKS" in env:  # a --find-links option replaces the variable
        find_links += ["--find-links", env["UV_FIND_LINKS"]]
    session.run("uv", "venv", "--quiet", str(venv), "--python", sys.executable, external=True)
    python = venv / ("Scripts" if os.name == "nt" else "bin") / "python"
    session.run(
        "uv", "pip", "install", "--python", str(python), *find_links, *pins, str(wheel),
        external=True, env=env,
    )  # fmt: skip
    module = _import_name(package)
    session.run(
        str(python),
        "-c",
        f"import {module} as m, papercraft.core; print('{module}', m.__version__)",
        external=True,
    )
    session.run(str(python), "-m", "papercraft.core.cli", "--version", external=True)
    session.run(str(python.with_name("papercraft")), "info", external=True)


@nox.session
def demo(session: nox.Session) -> None:
    """Install every package (with its `demo` extra, if any) and run `papercraft demo`
    (outputs under demo-output/)."""
    reqs = [f"{ROOT / 'packages' / 'core'}[plot]"]
    reqs += [
        str(ROOT / "packages" / p) + ("[demo]" if "demo" in _extras(p) else "")
        for p in PACKAGES
        if p != "core"
    ]
    _install(session, *reqs)
    session.run("papercraft", "info")
    session.run("papercraft", "demo", "--output", str(ROOT / "demo-output"), *session.posargs)


@nox.session
@nox.parametrize("package", PACKAGES)
def bench(session: nox.Session, package: str) -> None:
    """Run packages/<package>/benchmarks/*.py; results under benchmarks/results/."""
    reqs = _package_requirements(package, "test")
    reqs[0] = f"{ROOT / 'packages' / 'core'}[plot]" if package != "core" else reqs[0]
    _install(session, *reqs)
    scripts = sorted((ROOT / "packages" / package / "benchmarks").glob("bench_*.py"))
    if not scripts:
        session.skip(f"packages/{package}/benchmarks has no bench_*.py script")
    results = ROOT / "packages" / package / "benchmarks" / "results"
    for script in scripts:
        session.run("python", str(script), "--output", str(results), *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site in strict mode (output: site/)."""
    session.install(*DOCS_REQUIREMENTS)
    session.run(
        "python",
        str(ROOT / "tools" / "collect_bench.py"),
        "--output",
        str(ROOT / "docs" / "_generated" / "benchmarks.md"),
    )
    session.run(
        "mkdocs", "build", "--strict", "-f", str(ROOT / "docs" / "mkdocs.yml"), *session.posargs
    )
