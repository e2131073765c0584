"""Crash-safe file writes and versioned, checksummed safetensors checkpoints.

Atomic writes (DESIGN rule 9): :func:`atomic_write` writes into a temporary file in the
target's directory, flushes and fsyncs it, then :func:`os.replace`\\s it onto the target, so a
reader sees either the old file or the new one, never a half-written one; on any exception the
temporary file is removed and the target is untouched. :func:`atomic_directory` does the same
for artifacts made of several files (a checkpoint, an index): they are written into a temporary
sibling directory that is renamed onto the target at the end.

Versioned artifacts: a directory carries a ``manifest.json``::

    {"format": "papercraft.svdr.index", "format_version": 2,
     "papercraft_core_version": "0.1.0", "created": "2025-01-01T00:00:00+00:00",
     "files": {"tensors.safetensors": {"sha256": "…", "bytes": 1234}},
     "metadata": {…user JSON…}}

:func:`read_manifest` refuses another format kind or a version newer than the reader supports;
:func:`verify_manifest` refuses missing, truncated or corrupted files. :func:`save_tensors` /
:func:`load_tensors` apply this to a dict of tensors stored with safetensors (never pickle).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, TypeGuard, overload

from papercraft.core._version import __version__

if TYPE_CHECKING:
    import torch

__all__ = [
    "MANIFEST_NAME",
    "CheckpointError",
    "ChecksumError",
    "FileEntry",
    "FormatVersionError",
    "Manifest",
    "StrPath",
    "atomic_directory",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "load_tensors",
    "read_manifest",
    "save_tensors",
    "sha256_file",
    "verify_manifest",
    "write_manifest",
]

MANIFEST_NAME = "manifest.json"
StrPath = str | os.PathLike[str]  # a path argument, as accepted by open()
_CHUNK = 1 << 20


class CheckpointError(ValueError):
    """A checkpoint or index directory cannot be loaded (missing, malformed, wrong kind)."""


class FormatVersionError(CheckpointError):
    """The artifact was written with a format version this reader does not support."""


class ChecksumError(CheckpointError):
    """A file's size or SHA-256 differs from its manifest entry (corrupted or modified)."""


# --------------------------------------------------------------------------------------------
# Atomic writes
# --------------------------------------------------------------------------------------------

_umask_lock = threading.Lock()


def _current_umask() -> int:
    with _umask_lock:  # os.umask can only be read by setting it
        umask = os.umask(0o022)
        os.umask(umask)
    return umask


def _default_file_mode() -> int:
    """Permission bits a plain ``open(path, "w")`` would give a new file (0o666 minus umask)."""
    return 0o666 & ~_current_umask()


def _fsync_directory(directory: Path) -> None:
    """Make a rename inside ``directory`` durable; a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@overload
def atomic_write(
    path: StrPath, mode: Literal["w"] = "w", *, encoding: str = "utf-8"
) -> contextlib.AbstractContextManager[IO[str]]: ...
@overload
def atomic_write(
    path: StrPath, mode: Literal["wb"], *, encoding: str = "utf-8"
) -> contextlib.AbstractContextManager[IO[bytes]]: ...
def atomic_write(
    path: StrPath, mode: str = "w", *, encoding: str = "utf-8"
) -> contextlib.AbstractContextManager[IO[Any]]:
    """Open a temporary file that replaces ``path`` atomically when the block exits cleanly.

    The temporary file lives in the target's directory (so the final :func:`os.replace` is a
    same-filesystem rename) and is named ``.<name>.<random>.tmp``. On a clean exit it is
    flushed, fsynced, given the target's permission bits (or the umask default for a new file)
    and renamed onto ``path``; the directory is then fsynced. On any exception it is deleted and
    ``path`` keeps its old content (or stays absent). Missing parent directories are created.

    Args:
        path (str | os.PathLike[str]): the file to write.
        mode (str): ``"w"`` (text) or ``"wb"`` (binary). Default: "w"
        encoding (str): text encoding, ignored for ``"wb"``. Default: "utf-8"

    Returns:
        AbstractContextManager[IO]: yields the open temporary file.

    Raises:
        ValueError: if ``mode`` is not ``"w"`` or ``"wb"``.
        IsADirectoryError: if ``path`` is an existing directory.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    target = Path(path)
    if target.is_dir():
        raise IsADirectoryError(f"path must be a file, but {target} is a directory")
    return _atomic_write(target, mode, encoding)


@contextlib.contextmanager
def _atomic_write(target: Path, mode: str, encoding: str) -> Iterator[IO[Any]]:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        handle: IO[Any]
        if mode == "wb":
            handle = os.fdopen(fd, "wb")
        else:
            handle = os.fdopen(fd, "w", encoding=encoding, newline="")
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        try:
            permissions = stat.S_IMODE(target.stat().st_mode)
        except FileNotFoundError:
            permissions = _default_file_mode()
        os.chmod(tmp, permissions)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_directory(target.parent)


def atomic_write_text(path: StrPath, text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write`); newlines are kept as-is.

    Args:
        path (str | os.PathLike[str]): the file to write.
        text (str): the content.
        encoding (str): text encoding. Default: "utf-8"

    Returns:
        Path: the written path.

    Raises:
        TypeError: if ``text`` is not a str.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    with atomic_write(path, "w", encoding=encoding) as handle:
        handle.write(text)
    return Path(path)


def atomic_write_bytes(path: StrPath, data: bytes | bytearray | memoryview) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`).

    Args:
        path (str | os.PathLike[str]): the file to write.
        data (bytes | bytearray | memoryview): the content.

    Returns:
        Path: the written path.

    Raises:
        TypeError: if ``data`` is not bytes-like.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes-like, got {type(data).__name__}")
    with atomic_write(path, "wb") as handle:
        handle.write(data)
    return Path(path)


def atomic_write_json(
    path: StrPath,
    obj: Any,
    *,
    indent: int | None = 2,
    sort_keys: bool = False,
    allow_nan: bool = False,
) -> Path:
    """Serialize ``obj`` as UTF-8 JSON (non-ASCII kept, trailing newline) and write it atomically.

    The object is serialized before any file is created, so an unserializable object leaves no
    trace.

    Args:
        path (str | os.PathLike[str]): the file to write.
        obj (Any): a JSON-serializable object.
        indent (int | None): indentation, None for one line. Default: 2
        sort_keys (bool): sort object keys. Default: False
        allow_nan (bool): allow NaN/Infinity (not valid JSON). Default: False

    Returns:
        Path: the written path.

    Raises:
        TypeError: if ``obj`` is not JSON-serializable.
        ValueError: if ``obj`` holds NaN/Infinity and ``allow_nan`` is False.
    """
    text = json.dumps(
        obj, indent=indent, sort_keys=sort_keys, allow_nan=allow_nan, ensure_ascii=False
    )
    return atomic_write_text(path, text + "\n")


def atomic_directory(
    path: StrPath, *, overwrite: bool = True
) -> contextlib.AbstractContextManager[Path]:
    """Build a directory in a temporary sibling and move it onto ``path`` when the block succeeds.

    Yields the temporary directory (``.<name>.<random>.tmp`` next to ``path``); write every file
    into it. On a clean exit all files and the directory are fsynced and it is renamed onto
    ``path``. If ``path`` already exists (and ``overwrite`` is True), it is first renamed to a
    ``.<name>.<random>.old`` backup, the new directory takes its place, and the backup is deleted;
    if the second rename fails the backup is put back. A crash can therefore leave a stale
    ``.tmp``/``.old`` sibling, but ``path`` itself never holds a mixture of old and new files.
    On any exception inside the block the temporary directory is removed and ``path`` is
    untouched.

    Args:
        path (str | os.PathLike[str]): the directory to create or replace.
        overwrite (bool): replace an existing directory; if False an existing ``path`` raises.
            Default: True

    Returns:
        AbstractContextManager[Path]: yields the temporary directory to fill.

    Raises:
        FileExistsError: if ``path`` exists and ``overwrite`` is False, or is not a directory.
    """
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"path must be a directory, but {target} is a file")
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} already exists and overwrite=False")
    return _atomic_directory(target, overwrite)


def _fsync_tree(root: Path) -> None:
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            file_path = Path(dirpath, name)
            if file_path.is_symlink():
                continue
            with open(file_path, "rb") as handle:
                os.fsync(handle.fileno())
        _fsync_directory(Path(dirpath))


@contextlib.contextmanager
def _atomic_directory(target: Path, overwrite: bool) -> Iterator[Path]:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    try:
        os.chmod(tmp, 0o777 & ~_current_umask())  # mkdtemp makes it private (0o700)
        yield tmp
        _fsync_tree(tmp)
        if target.exists():
            if not overwrite:
                raise FileExistsError(f"{target} appeared while writing and overwrite=False")
            backup = Path(
                tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".old")
            )
            backup.rmdir()  # only the unique name is wanted
            os.rename(target, backup)
            try:
                os.rename(tmp, target)
            except BaseException:
                os.rename(backup, target)
                raise
            _fsync_directory(target.parent)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_directory(target.parent)


# --------------------------------------------------------------------------------------------
# Manifests
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileEntry:
    """Size and SHA-256 of one file listed in a manifest.

    Args:
        sha256 (str): lower-case hex digest.
        num_bytes (int): file size in bytes (stored as ``"bytes"`` in JSON).
    """

    sha256: str
    num_bytes: int


@dataclass(frozen=True)
class Manifest:
    """The parsed ``manifest.json`` of a versioned artifact directory.

    Args:
        format (str): the artifact kind, e.g. ``"papercraft.svdr.index"``.
        format_version (int): version of that kind's layout, ``>= 1``.
        papercraft_core_version (str): version of papercraft-core that wrote it.
        created (str): ISO-8601 UTC creation time.
        files (dict[str, FileEntry]): POSIX-style relative path -> size and checksum.
        metadata (dict[str, Any]): free user JSON.
    """

    format: str
    format_version: int
    papercraft_core_version: str
    created: str
    files: dict[str, FileEntry] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready dict written to ``manifest.json``."""
        return {
            "format": self.format,
            "format_version": self.format_version,
            "papercraft_core_version": self.papercraft_core_version,
            "created": self.created,
            "files": {
                name: {"sha256": entry.sha256, "bytes": entry.num_bytes}
                for name, entry in self.files.items()
            },
            "metadata": self.metadata,
        }

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "manifest") -> Manifest:
        """Validate and parse a decoded manifest.

        Args:
            data (Any): the decoded JSON.
            source (str): where it came from, for error messages. Default: "manifest"

        Returns:
            Manifest: the parsed manifest.

        Raises:
            CheckpointError: if a field is missing or has the wrong type, or a file path is
                absolute or leaves the directory.
        """

        def bad(what: str) -> CheckpointError:
            return CheckpointError(f"{source} is malformed: {what}")

        if not isinstance(data, dict):
            raise bad(f"expected a JSON object, got {type(data).__name__}")
        for key, kind in (("format", str), ("papercraft_core_version", str), ("created", str)):
            if not isinstance(data.get(key), kind):
                raise bad(f"field {key!r} must be a string, got {data.get(key)!r}")
        version = data.get("format_version")
        if not _is_int(version, minimum=1):
            raise bad(f"field 'format_version' must be an int >= 1, got {version!r}")
        raw_files = data.get("files")
        if not isinstance(raw_files, dict):
            raise bad(f"field 'files' must be an object, got {raw_files!r}")
        files: dict[str, FileEntry] = {}
        for name, entry in raw_files.items():
            _check_relative_name(name, error=bad)
            if not (
                isinstance(entry, dict)
                and isinstance(entry.get("sha256"), str)
                and _is_int(entry.get("bytes"), minimum=0)
            ):
                raise bad(f"entry for file {name!r} must be {{'sha256': str, 'bytes': int}}")
            files[name] = FileEntry(sha256=entry["sha256"], num_bytes=entry["bytes"])
        metadata = data.get("metadata", {})
        if not isinstance(metadata, dict):
            raise bad(f"field 'metadata' must be an object, got {type(metadata).__name__}")
        return cls(
            format=data["format"],
            format_version=version,
            papercraft_core_version=data["papercraft_core_version"],
            created=data["created"],
            files=files,
            metadata=metadata,
        )


def _is_int(value: Any, *, minimum: int) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _check_relative_name(name: Any, *, error: Any) -> None:
    """Refuse names that are not plain relative POSIX paths inside the directory."""
    if not isinstance(name, str) or not name:
        raise error(f"file name must be a non-empty string, got {name!r}")
    parts = name.split("/")
    if name.startswith("/") or "\\" in name or any(p in ("", ".", "..") for p in parts):
        raise error(f"file name must be a relative path inside the directory, got {name!r}")
    if name == MANIFEST_NAME:
        raise error(f"file name {MANIFEST_NAME!r} is reserved for the manifest")


def _check_format(format: str, format_version: int) -> None:
    if not isinstance(format, str) or not format.strip():
        raise ValueError(
            f"format must be a non-empty string such as 'papercraft.svdr.index', got {format!r}"
        )
    if not _is_int(format_version, minimum=1):
        raise ValueError(f"format_version must be an int >= 1, got {format_version!r}")


def _check_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a mapping (JSON object), got {type(metadata).__name__}")
    try:
        # A round trip both validates and detaches the stored copy from the caller's objects.
        decoded: dict[str, Any] = json.loads(json.dumps(dict(metadata), allow_nan=False))
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"metadata must be JSON-serializable (no NaN/Infinity): {error}"
        ) from error
    return decoded


def sha256_file(path: StrPath) -> str:
    """The lower-case hex SHA-256 of a file, read in 1 MiB chunks.

    Args:
        path (str | os.PathLike[str]): the file.

    Returns:
        str: 64 hex characters.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(
    directory: StrPath,
    *,
    format: str,
    format_version: int,
    files: Iterable[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Manifest:
    """Checksum files of ``directory`` and write its ``manifest.json`` atomically.

    Use it inside :func:`atomic_directory` for artifacts made of several files (e.g. an index of
    numpy arrays), and read them back with :func:`read_manifest` + :func:`verify_manifest`.

    Args:
        directory (str | os.PathLike[str]): an existing directory.
        format (str): the artifact kind, e.g. ``"papercraft.svdr.index"``.
        format_version (int): version of that kind's layout, ``>= 1``.
        files (Iterable[str] | None): POSIX relative paths to list; None lists every regular
            file below ``directory`` except the manifest. Default: None
        metadata (Mapping[str, Any] | None): free JSON stored with the manifest. Default: None

    Returns:
        Manifest: what was written.

    Raises:
        ValueError: on a bad format, version, file name or non-JSON metadata.
        FileNotFoundError: if ``directory`` or a listed file does not exist.
    """
    _check_format(format, format_version)
    stored_metadata = _check_metadata(metadata)
    root = Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"directory must be an existing directory, got {root}")
    if files is None:
        names = sorted(
            p.relative_to(root).as_posix()
            for p in root.rglob("*")
            if p.is_file() and p.relative_to(root).as_posix() != MANIFEST_NAME
        )
    else:
        names = list(files)
    for name in names:
        _check_relative_name(name, error=ValueError)
        if not (root / name).is_file():
            raise FileNotFoundError(f"files lists {name!r}, which is not a file in {root}")
    entries = {
        name: FileEntry(sha256=sha256_file(root / name), num_bytes=(root / name).stat().st_size)
        for name in names
    }
    manifest = Manifest(
        format=format,
        format_version=format_version,
        papercraft_core_version=__version__,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        files=entries,
        metadata=stored_metadata,
    )
    atomic_write_json(root / MANIFEST_NAME, manifest.to_dict())
    return manifest


def read_manifest(
    directory: StrPath,
    *,
    format: str | None = None,
    max_format_version: int | None = None,
) -> Manifest:
    """Read and validate ``directory/manifest.json``, optionally checking kind and version.

    Args:
        directory (str | os.PathLike[str]): the artifact directory.
        format (str | None): the expected kind; None accepts any. Default: None
        max_format_version (int | None): the newest version the caller can read; None accepts
            any. Default: None

    Returns:
        Manifest: the parsed manifest (files are not checked; see :func:`verify_manifest`).

    Raises:
        CheckpointError: if the directory or manifest is missing or malformed, or the kind differs.
        FormatVersionError: if the artifact's version is newer than ``max_format_version``.
    """
    root = Path(directory)
    if not root.is_dir():
        raise CheckpointError(f"no artifact directory at {root}")
    manifest_path = root / MANIFEST_NAME
    if not manifest_path.is_file():
        raise CheckpointError(
            f"{root} has no {MANIFEST_NAME}; it was not written by papercraft or the write "
            "did not finish"
        )
    try:
        data = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{manifest_path} is not valid JSON: {error}") from error
    manifest = Manifest.from_dict(data, source=str(manifest_path))
    if format is not None and manifest.format != format:
        raise CheckpointError(
            f"{root} holds a {manifest.format!r} artifact, expected format {format!r}"
        )
    if max_format_version is not None and manifest.format_version > max_format_version:
        raise FormatVersionError(
            f"{root} has {manifest.format!r} format_version {manifest.format_version}, but this "
            f"papercraft reads versions up to {max_format_version}: it was written by a newer "
            f"papercraft (core {manifest.papercraft_core_version}); upgrade to load it"
        )
    return manifest


def verify_manifest(directory: StrPath, manifest: Manifest | None = None) -> Manifest:
    """Check that every file listed in the manifest exists with the recorded size and SHA-256.

    Args:
        directory (str | os.PathLike[str]): the artifact directory.
        manifest (Manifest | None): an already-read manifest; None reads it. Default: None

    Returns:
        Manifest: the verified manifest.

    Raises:
        CheckpointError: if a listed file is missing.
        ChecksumError: if a file's size or checksum differs (corrupted or modified).
    """
    root = Path(directory)
    if manifest is None:
        manifest = read_manifest(root)
    for name, entry in manifest.files.items():
        file_path = root / name
        if not file_path.is_file():
            raise CheckpointError(
                f"{root} is incomplete: file {name!r} listed in the manifest is missing"
            )
        size = file_path.stat().st_size
        if size != entry.num_bytes:
            raise ChecksumError(
                f"{file_path} is corrupted: {size} bytes, the manifest records {entry.num_bytes}"
            )
        if sha256_file(file_path) != entry.sha256:
            raise ChecksumError(
                f"{file_path} is corrupted: its SHA-256 differs from the manifest's"
            )
    return manifest


# --------------------------------------------------------------------------------------------
# Tensor checkpoints
# --------------------------------------------------------------------------------------------


def _prepare_tensors(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached, CPU, dense, contiguous tensors with distinct storage (what safetensors needs)."""
    import torch

    prepared: dict[str, torch.Tensor] = {}
    seen_storage: set[tuple[int, int]] = set()
    for name, tensor in tensors.items():
        t = tensor.detach()
        if t.layout != torch.strided:
            t = t.to_dense()
        t = t.to("cpu")
        key = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        shares = key in seen_storage and key[1] > 0
        # Own a storage of exactly this tensor's size: contiguous, not shared, not a small
        # view into a large buffer (which would drag the whole buffer along).
        if shares or not t.is_contiguous() or t.untyped_storage().nbytes() != t.nbytes:
            t = t.clone(memory_format=torch.contiguous_format)
        seen_storage.add(key)
        prepared[name] = t
    return prepared


def save_tensors(
    directory: StrPath,
    tensors: Mapping[str, torch.Tensor],
    *,
    format: str,
    format_version: int,
    metadata: Mapping[str, Any] | None = None,
    filename: str = "tensors.safetensors",
    overwrite: bool = True,
) -> Manifest:
    """Atomically write a versioned checkpoint: ``directory/{filename, manifest.json}``.

    Tensors are detached, moved to CPU and made contiguous (views, transposes, tied/shared
    weights and sparse tensors are all accepted) and stored with
    :func:`safetensors.torch.save_file`.
    The directory is built by :func:`atomic_directory`, so an interrupted save leaves any
    previous checkpoint at ``directory`` intact.

    Args:
        directory (str | os.PathLike[str]): the checkpoint directory to create or replace.
        tensors (Mapping[str, torch.Tensor]): name -> tensor (may be empty).
        format (str): the artifact kind, e.g. ``"papercraft.svdr.index"``.
        format_version (int): version of that kind's layout, ``>= 1``.
        metadata (Mapping[str, Any] | None): free JSON stored in the manifest. Default: None
        filename (str): name of the safetensors file. Default: "tensors.safetensors"
        overwrite (bool): replace an existing ``directory``. Default: True

    Returns:
        Manifest: the written manifest.

    Raises:
        TypeError: if ``tensors`` is not a mapping of str to tensors.
        ValueError: on a bad format, version, filename or non-JSON metadata.
        FileExistsError: if ``directory`` exists and ``overwrite`` is False.
    """
    import torch
    from safetensors.torch import save_file

    _check_format(format, format_version)
    stored_metadata = _check_metadata(metadata)
    if not isinstance(tensors, Mapping):
        raise TypeError(
            f"tensors must be a mapping of str to torch.Tensor, got {type(tensors).__name__}"
        )
    for name, tensor in tensors.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"tensors keys must be non-empty strings, got {name!r}")
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(
                f"tensors[{name!r}] must be a torch.Tensor, got {type(tensor).__name__}"
            )
    _check_relative_name(filename, error=ValueError)
    if "/" in filename:
        raise ValueError(f"filename must be a plain file name, got {filename!r}")
    prepared = _prepare_tensors(tensors)
    header = {"format": format, "format_version": str(format_version)}
    with atomic_directory(directory, overwrite=overwrite) as tmp:
        save_file(prepared, str(tmp / filename), metadata=header)
        manifest = write_manifest(
            tmp,
            format=format,
            format_version=format_version,
            files=[filename],
            metadata=stored_metadata,
        )
    return manifest


def load_tensors(
    directory: StrPath,
    *,
    format: str,
    max_format_version: int,
    device: str | torch.device = "cpu",
    verify: bool = True,
    filename: str = "tensors.safetensors",
) -> tuple[dict[str, torch.Tensor], Manifest]:
    """Load a checkpoint written by :func:`save_tensors`, refusing anything it cannot trust.

    Args:
        directory (str | os.PathLike[str]): the checkpoint directory.
        format (str): the expected artifact kind.
        max_format_version (int): the newest format version the caller can read.
        device (str | torch.device): where to put the tensors. Default: "cpu"
        verify (bool): check sizes and SHA-256 of the files first (reads them twice). Default: True
        filename (str): name of the safetensors file. Default: "tensors.safetensors"

    Returns:
        tuple[dict[str, torch.Tensor], Manifest]: the tensors and the manifest.

    Raises:
        ValueError: on a bad ``format``/``max_format_version`` argument.
        CheckpointError: missing directory, manifest or file, or another format kind.
        FormatVersionError: written by a newer papercraft.
        ChecksumError: a file was corrupted or modified.
    """
    import torch
    from safetensors.torch import load_file

    _check_format(format, max_format_version)
    target_device = torch.device(device)
    manifest = read_manifest(directory, format=format, max_format_version=max_format_version)
    if filename not in manifest.files:
        raise CheckpointError(
            f"{directory} manifest does not list {filename!r}; it lists {sorted(manifest.files)}"
        )
    if verify:
        verify_manifest(directory, manifest)
    path = Path(directory) / filename
    if not path.is_file():
        raise CheckpointError(f"{directory} is incomplete: file {filename!r} is missing")
    tensors = load_file(str(path), device=str(target_device))
    return tensors, manifest
