"""Crash-safe file writing: write to a temporary name in the same directory, fsync, rename.

A crash or a full disk in the middle of a write leaves the previous good file untouched.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on clean exit fsync it and rename onto ``path``.

    On any exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with open(tmp, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary sibling directory to fill; on clean exit it replaces ``path`` (an old ``path`` is
    removed first). On any exception it is removed and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_save_npy(path: str | os.PathLike, array) -> None:
    """``np.save`` through a temporary file (np.save appends .npy to bare names, so pass a handle)."""
    import numpy as np  # lazy: keeps torch/numpy out of startup (`prepare`, `validate`, `--help` start fast)

    with atomic_open(path, "wb") as f:
        np.save(f, array)


def check_free_space(directory: str | os.PathLike, needed_bytes: int, what: str = "output") -> None:
    """Refuse a large dump before it starts when the disk cannot hold it (with 5 % headroom)."""
    directory = Path(directory)
    probe = directory
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if needed_bytes * 1.05 > free:
        raise OSError(
            f"not enough disk space for {what} in {directory}: need about "
            f"{needed_bytes / 1e9:.2f} GB, {free / 1e9:.2f} GB free. Free some space or choose "
            f"another output directory."
        )
