"""The one place that writes outputs: atomic, and never outside the output folder."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, Mapping

from .diagnostics import CarepressError, error


def check_path(relative: str) -> str:
    """A safe relative POSIX path, or CarepressError (CP120)."""
    if (
        not relative
        or "\\" in relative
        or "\x00" in relative
        or relative.startswith("/")
        or any(part in ("", ".", "..") for part in relative.split("/"))
    ):
        raise CarepressError([error("CP120", f"refused output path {relative!r}: not a plain relative path")])
    return relative


def _same_bytes(_name: str, target: str, data: bytes) -> bool:
    try:
        with open(target, "rb") as handle:
            return handle.read() == data
    except (FileNotFoundError, IsADirectoryError):
        return False


Unchanged = Callable[[str, str, bytes], bool]


def publish(files: Mapping[str, bytes], out_dir: Path, unchanged: Unchanged = _same_bytes) -> None:
    """Write every file under out_dir atomically (temp file + os.replace).

    All paths are checked before anything is written; a path whose parent resolves
    outside out_dir (a symlink planted in outputs/, say) is refused. A file for which
    ``unchanged(name, path, data)`` holds is left as it is, timestamp and all; by default
    that means it already has these bytes (the build passes a cheaper check from its manifest).
    Plain string paths and ``os`` calls: a build publishes thousands of files.
    """
    for name in files:
        check_path(name)
    out_dir.mkdir(parents=True, exist_ok=True)
    root = os.path.realpath(out_dir)
    resolved: dict[str, str] = {}
    for name in sorted(files):
        folder, _, _base = name.rpartition("/")
        if folder not in resolved:  # once per folder: thousands of files share a few
            os.makedirs(os.path.join(root, folder), exist_ok=True)
            real = os.path.realpath(os.path.join(root, folder))
            if real != root and not real.startswith(root + os.sep):
                raise CarepressError([error("CP120", f"refused output path {name!r}: it leads outside {out_dir}")])
            resolved[folder] = real
        parent = resolved[folder]
        target = os.path.join(parent, _base)
        if os.path.islink(target):
            raise CarepressError([error("CP120", f"refused output path {name!r}: it is a symbolic link")])
        try:
            if unchanged(name, target, files[name]):
                continue  # unchanged: keep its timestamp
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=parent)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(files[name])
                os.chmod(tmp, 0o644)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise CarepressError([error("CP121", f"cannot write {name}: {exc.strerror}")]) from None


def prune(out_dir: Path, folder: str, keep: set[str]) -> None:
    """Delete files directly in ``out_dir/folder`` whose names are not in ``keep`` (a cache's stale parts)."""
    check_path(folder)
    target = out_dir / folder
    if target.is_symlink() or not target.is_dir():
        return
    for path in target.iterdir():
        if path.is_file() and not path.is_symlink() and path.name not in keep:
            path.unlink()
