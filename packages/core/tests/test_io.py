"""Tests for papercraft.core.io: atomic writes and versioned, checksummed checkpoints."""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import sys
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from papercraft.core._version import __version__
from papercraft.core.io import (
    MANIFEST_NAME,
    CheckpointError,
    ChecksumError,
    FormatVersionError,
    Manifest,
    atomic_directory,
    atomic_write,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    load_tensors,
    read_manifest,
    save_tensors,
    sha256_file,
    verify_manifest,
    write_manifest,
)

KIND = "papercraft.test.weights"


class _Crash(RuntimeError):
    pass


def _crash_inside(manager: AbstractContextManager[Any], data: str | bytes) -> None:
    """Write ``data`` through the managed file or directory, then fail like a crash would."""
    with manager as target:
        if isinstance(target, Path):
            (target / "d.txt").write_text(str(data))
        else:
            target.write(data)
            target.flush()
        raise _Crash


def _save(directory: Path, tensors: dict[str, torch.Tensor], **kwargs: Any) -> None:
    save_tensors(directory, tensors, format=KIND, format_version=1, **kwargs)


def _load(directory: Path, **kwargs: Any) -> tuple[dict[str, torch.Tensor], Manifest]:
    return load_tensors(directory, format=KIND, max_format_version=1, **kwargs)


# ------------------------------------------------------------------ atomic files


def test_atomic_write_creates_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.txt"  # parent is created
    with atomic_write(target) as handle:
        handle.write("first\r\nline")
    assert target.read_bytes() == b"first\r\nline"  # no newline translation
    with atomic_write(target, "wb") as handle:
        handle.write(b"\x00\xffsecond")
    assert target.read_bytes() == b"\x00\xffsecond"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.txt"]


def test_atomic_write_crash_keeps_old_content_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_text("old")
    with pytest.raises(_Crash):
        _crash_inside(atomic_write(target), "new but half")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]
    # A crash while creating a new file leaves nothing at all.
    with pytest.raises(_Crash):
        _crash_inside(atomic_write(tmp_path / "fresh.bin", "wb"), b"x")
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")
def test_atomic_write_keeps_permissions(tmp_path: Path) -> None:
    target = tmp_path / "f.txt"
    target.write_text("a")
    os.chmod(target, 0o640)
    atomic_write_text(target, "b")
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    fresh = atomic_write_text(tmp_path / "g.txt", "c")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o666 & ~umask  # not mkstemp's private 0o600


def test_atomic_write_argument_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mode must be 'w' or 'wb'"):
        atomic_write(tmp_path / "x", "a")  # type: ignore[call-overload]
    with pytest.raises(IsADirectoryError, match="is a directory"):
        atomic_write(tmp_path)
    with pytest.raises(TypeError, match="text must be a str"):
        atomic_write_text(tmp_path / "x", b"bytes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="data must be bytes-like"):
        atomic_write_bytes(tmp_path / "x", "text")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_json(tmp_path: Path) -> None:
    target = tmp_path / "m.json"
    obj = {"name": "ünïcödé 🙂", "values": [1, 2.5, None], "nested": {"ok": True}}
    atomic_write_json(target, obj)
    text = target.read_text(encoding="utf-8")
    assert "ünïcödé 🙂" in text
    assert text.endswith("\n")
    assert json.loads(text) == obj
    with pytest.raises(ValueError, match="Out of range float"):
        atomic_write_json(tmp_path / "nan.json", {"x": float("nan")})
    with pytest.raises(TypeError):
        atomic_write_json(tmp_path / "obj.json", {"x": object()})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]


# ------------------------------------------------------------------ atomic directories


def test_atomic_directory_create_replace_and_crash(tmp_path: Path) -> None:
    target = tmp_path / "ckpt"
    with atomic_directory(target) as tmp:
        assert tmp.parent == tmp_path
        assert tmp != target
        (tmp / "a.txt").write_text("v1")
        (tmp / "nested").mkdir()
        (tmp / "nested" / "b.txt").write_text("v1")
        assert not target.exists()  # nothing visible until the block succeeds
    assert (target / "nested" / "b.txt").read_text() == "v1"

    with atomic_directory(target) as tmp:
        (tmp / "c.txt").write_text("v2")
    assert sorted(p.name for p in target.iterdir()) == ["c.txt"]  # old files gone, not merged

    with pytest.raises(_Crash):
        _crash_inside(atomic_directory(target), "v3")
    assert sorted(p.name for p in target.iterdir()) == ["c.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no tmp/backup siblings


def test_atomic_directory_refusals(tmp_path: Path) -> None:
    (tmp_path / "exists").mkdir()
    with pytest.raises(FileExistsError, match="overwrite=False"):
        atomic_directory(tmp_path / "exists", overwrite=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="is a file"):
        atomic_directory(tmp_path / "file")


# ------------------------------------------------------------------ tensor checkpoints


def test_round_trip_dtypes_and_metadata(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(0)
    tensors = {
        "f32": torch.randn(3, 4, generator=gen),
        "f16": torch.randn(5, generator=gen).half(),
        "bf16": torch.randn(2, 3, generator=gen).bfloat16(),
        "i64": torch.randint(-(2**40), 2**40, (7,), generator=gen),
        "i8": torch.randint(-128, 127, (2, 2), generator=gen, dtype=torch.int8),
        "u8": torch.randint(0, 255, (4,), generator=gen, dtype=torch.uint8),
        "bool": torch.rand(6, generator=gen) > 0.5,
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 3),
    }
    metadata = {"step": 12, "note": "ünïcödé", "dims": [3, 4]}
    manifest = save_tensors(
        tmp_path / "c", tensors, format=KIND, format_version=3, metadata=metadata
    )
    loaded, read_back = load_tensors(tmp_path / "c", format=KIND, max_format_version=3)
    assert loaded.keys() == tensors.keys()
    for name, tensor in tensors.items():
        assert loaded[name].dtype == tensor.dtype, name
        assert torch.equal(loaded[name], tensor), name
    assert read_back == manifest
    assert read_back.metadata == metadata
    assert read_back.format_version == 3


def test_manifest_file_layout(tmp_path: Path) -> None:
    _save(tmp_path / "c", {"w": torch.ones(2)}, metadata={"a": 1})
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == [
        MANIFEST_NAME,
        "tensors.safetensors",
    ]
    raw = json.loads((tmp_path / "c" / MANIFEST_NAME).read_text())
    assert set(raw) == {
        "format",
        "format_version",
        "papercraft_core_version",
        "created",
        "files",
        "metadata",
    }
    assert raw["format"] == KIND
    assert raw["format_version"] == 1
    assert raw["papercraft_core_version"] == __version__
    assert raw["created"].endswith("+00:00")
    data = (tmp_path / "c" / "tensors.safetensors").read_bytes()
    assert raw["files"] == {
        "tensors.safetensors": {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    }
    assert raw["metadata"] == {"a": 1}
    assert sha256_file(tmp_path / "c" / "tensors.safetensors") == hashlib.sha256(data).hexdigest()


def test_non_contiguous_shared_and_grad_tensors(tmp_path: Path) -> None:
    base = torch.arange(24.0).reshape(4, 6)
    big = torch.arange(100_000.0)
    weight = torch.nn.Parameter(torch.randn(3, 5))
    tensors = {
        "transposed": base.t(),  # non-contiguous
        "strided": base[:, ::2],  # non-contiguous view of the same storage
        "base": base,
        "tied_a": weight,  # same tensor under two names (tied embeddings)
        "tied_b": weight,
        "small_slice": big[10:20],  # contiguous view into a large buffer
    }
    _save(tmp_path / "c", tensors)
    loaded, _ = _load(tmp_path / "c")
    for name, tensor in tensors.items():
        assert torch.equal(loaded[name], tensor.detach()), name
        assert loaded[name].is_contiguous()
    # The slice was stored alone, not with its 400 kB buffer.
    assert (tmp_path / "c" / "tensors.safetensors").stat().st_size < 10_000
    assert weight.grad is None
    assert weight.requires_grad


def test_empty_checkpoint(tmp_path: Path) -> None:
    _save(tmp_path / "c", {})
    loaded, manifest = _load(tmp_path / "c")
    assert loaded == {}
    assert manifest.metadata == {}


def test_save_replaces_existing_checkpoint_atomically(tmp_path: Path) -> None:
    _save(tmp_path / "c", {"w": torch.zeros(2)})
    _save(tmp_path / "c", {"w": torch.ones(2), "b": torch.ones(1)})
    loaded, _ = _load(tmp_path / "c")
    assert torch.equal(loaded["w"], torch.ones(2))
    assert "b" in loaded
    with pytest.raises(FileExistsError):
        _save(tmp_path / "c", {"w": torch.zeros(2)}, overwrite=False)
    # A bad value is refused before anything is written: the old checkpoint stays.
    with pytest.raises(TypeError, match=r"tensors\['x'\] must be a torch.Tensor"):
        _save(tmp_path / "c", {"x": np.zeros(2)})  # type: ignore[dict-item]
    loaded, _ = _load(tmp_path / "c")
    assert torch.equal(loaded["w"], torch.ones(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]


def test_flipped_byte_is_detected(tmp_path: Path) -> None:
    _save(tmp_path / "c", {"w": torch.randn(64, generator=torch.Generator().manual_seed(1))})
    path = tmp_path / "c" / "tensors.safetensors"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0x01  # inside the tensor data: safetensors itself would load it silently
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="corrupted"):
        _load(tmp_path / "c")
    loaded, _ = _load(tmp_path / "c", verify=False)  # opt-out really skips the check
    assert loaded["w"].shape == (64,)


def test_truncated_and_missing_files(tmp_path: Path) -> None:
    _save(tmp_path / "c", {"w": torch.ones(8)})
    path = tmp_path / "c" / "tensors.safetensors"
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(ChecksumError, match="bytes, the manifest records"):
        _load(tmp_path / "c")
    path.unlink()
    with pytest.raises(CheckpointError, match="missing"):
        _load(tmp_path / "c")
    with pytest.raises(CheckpointError, match="missing"):
        _load(tmp_path / "c", verify=False)
    (tmp_path / "c" / MANIFEST_NAME).unlink()
    with pytest.raises(CheckpointError, match=f"has no {MANIFEST_NAME}"):
        _load(tmp_path / "c")
    with pytest.raises(CheckpointError, match="no artifact directory"):
        _load(tmp_path / "nowhere")


def test_newer_version_and_wrong_kind_refused(tmp_path: Path) -> None:
    save_tensors(tmp_path / "c", {"w": torch.ones(1)}, format=KIND, format_version=5)
    with pytest.raises(FormatVersionError, match=r"newer papercraft.*upgrade"):
        load_tensors(tmp_path / "c", format=KIND, max_format_version=4)
    assert issubclass(FormatVersionError, CheckpointError)
    assert issubclass(CheckpointError, ValueError)
    with pytest.raises(
        CheckpointError, match=re.escape("holds a 'papercraft.test.weights' artifact")
    ):
        load_tensors(tmp_path / "c", format="papercraft.svdr.index", max_format_version=9)
    loaded, manifest = load_tensors(tmp_path / "c", format=KIND, max_format_version=5)
    assert manifest.format_version == 5
    assert torch.equal(loaded["w"], torch.ones(1))


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda m: m.pop("format"), "'format' must be a string"),
        (lambda m: m.update(format_version="2"), "format_version"),
        (lambda m: m.update(format_version=0), "format_version"),
        (
            lambda m: m.update(files={"../escape": {"sha256": "0", "bytes": 1}}),
            "inside the directory",
        ),
        (lambda m: m.update(files={"/abs": {"sha256": "0", "bytes": 1}}), "inside the directory"),
        (lambda m: m.update(files={"x": {"sha256": "0"}}), "entry for file 'x'"),
        (lambda m: m.update(metadata=[1]), "'metadata' must be an object"),
    ],
)
def test_malformed_manifest_refused(tmp_path: Path, edit: object, match: str) -> None:
    _save(tmp_path / "c", {"w": torch.ones(1)})
    manifest_path = tmp_path / "c" / MANIFEST_NAME
    raw = json.loads(manifest_path.read_text())
    edit(raw)  # type: ignore[operator]
    manifest_path.write_text(json.dumps(raw))
    with pytest.raises(CheckpointError, match=match):
        _load(tmp_path / "c")


def test_manifest_not_json_refused(tmp_path: Path) -> None:
    _save(tmp_path / "c", {"w": torch.ones(1)})
    (tmp_path / "c" / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        _load(tmp_path / "c")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"format": ""}, ValueError, "format must be a non-empty string"),
        ({"format_version": 0}, ValueError, "format_version must be an int >= 1"),
        ({"format_version": True}, ValueError, "format_version must be an int >= 1"),
        ({"metadata": {"x": {1, 2}}}, ValueError, "metadata must be JSON-serializable"),
        ({"metadata": {"x": float("inf")}}, ValueError, "metadata must be JSON-serializable"),
        ({"filename": "../t.safetensors"}, ValueError, "inside the directory"),
        ({"filename": MANIFEST_NAME}, ValueError, "reserved"),
    ],
)
def test_save_argument_errors(
    tmp_path: Path, kwargs: dict[str, object], error: type, match: str
) -> None:
    args: dict[str, object] = {"format": KIND, "format_version": 1, **kwargs}
    with pytest.raises(error, match=match):
        save_tensors(tmp_path / "c", {"w": torch.ones(1)}, **args)  # type: ignore[arg-type]
    assert not (tmp_path / "c").exists()


# ------------------------------------------------------------------ manifests for other artifacts


def test_manifest_for_a_numpy_index_directory(tmp_path: Path) -> None:
    target = tmp_path / "index"
    rng = np.random.default_rng(0)
    with atomic_directory(target) as tmp:
        np.save(tmp / "codes.npy", rng.integers(0, 2, (10, 16), dtype=np.uint8))
        (tmp / "shards").mkdir()
        np.save(tmp / "shards" / "0.npy", rng.standard_normal((4, 3)).astype(np.float32))
        written = write_manifest(tmp, format="papercraft.svdr.index", format_version=2)
    assert sorted(written.files) == ["codes.npy", "shards/0.npy"]
    manifest = read_manifest(target, format="papercraft.svdr.index", max_format_version=2)
    assert verify_manifest(target, manifest) == manifest == written
    with open(target / "shards" / "0.npy", "r+b") as handle:
        handle.seek(-1, os.SEEK_END)
        last = handle.read(1)
        handle.seek(-1, os.SEEK_END)
        handle.write(bytes([last[0] ^ 0xFF]))
    with pytest.raises(ChecksumError, match=r"0\.npy is corrupted"):
        verify_manifest(target)


def test_write_manifest_explicit_files_and_errors(tmp_path: Path) -> None:
    (tmp_path / "a.bin").write_bytes(b"abc")
    (tmp_path / "b.bin").write_bytes(b"ignored")
    manifest = write_manifest(tmp_path, format="k", format_version=1, files=["a.bin"])
    assert list(manifest.files) == ["a.bin"]
    assert manifest.files["a.bin"].num_bytes == 3
    assert manifest.files["a.bin"].sha256 == hashlib.sha256(b"abc").hexdigest()
    with pytest.raises(FileNotFoundError, match=r"'missing\.bin'"):
        write_manifest(tmp_path, format="k", format_version=1, files=["missing.bin"])
    with pytest.raises(ValueError, match="inside the directory"):
        write_manifest(tmp_path, format="k", format_version=1, files=["../a.bin"])
    with pytest.raises(FileNotFoundError, match="existing directory"):
        write_manifest(tmp_path / "nope", format="k", format_version=1)
