"""The one place that writes outputs: atomic, and never outside the output folder."""

from __future__ import annotations

import os
import stat
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


def _same_bytes(_name: str, target: str, st: os.stat_result, data: bytes) -> bool:
    if st.st_size != len(data):
        return False
    try:
        with open(target, "rb") as handle:
            return handle.read() == data
    except OSError:
        return False


# (name, path, its lstat, the bytes to publish) -> the file already holds them
Unchanged = Callable[[str, str, os.stat_result, bytes], bool]


def publish(files: Mapping[str, bytes], out_dir: Path, unchanged: Unchanged = _same_bytes) -> dict[str, os.stat_result]:
    """Write every file under out_dir atomically (temp file + os.replace); return each file's
    stat as published (the build's manifest records it).

    All paths are checked before anything is written; a path whose parent resolves
    outside out_dir (a symlink planted in outputs/, say) is refused. A regular file for which
    ``unchanged(name, path, stat, data)`` holds is left as it is, timestamp and all; by default
    that means it already has these bytes (the build passes a cheaper check from its manifest).
    Plain string paths, ``os`` calls and one ``lstat`` a file: a build publishes thousands.
    """
    for name in files:
        check_path(name)
    out_dir.mkdir(parents=True, exist_ok=True)
    root = os.path.realpath(out_dir)
    resolved: dict[str, str] = {}
    stats: dict[str, os.stat_result] = {}
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
        data = files[name]
        try:
            try:
                st = os.lstat(target)
            except FileNotFoundError:
                st = None
            if st is not None and stat.S_ISLNK(st.st_mode):
                raise CarepressError([error("CP120", f"refused output path {name!r}: it is a symbolic link")])
            if st is not None and stat.S_ISREG(st.st_mode) and unchanged(name, target, st, data):
                stats[name] = st
                continue  # unchanged: keep its timestamp
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=parent)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fchmod(fd, 0o644)
                    stats[name] = os.fstat(fd)  # the same inode, size and mtime once renamed
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise CarepressError([error("CP121", f"cannot write {name}: {exc.strerror}")]) from None
    return stats


def prune(out_dir: Path, folder: str, keep: set[str]) -> None:
    """Delete files directly in ``out_dir/folder`` whose names are not in ``keep`` (a cache's stale parts)."""
    check_path(folder)
    target = out_dir / folder
    if target.is_symlink() or not target.is_dir():
        return
    for path in target.iterdir():
        if path.is_file() and not path.is_symlink() and path.name not in keep:
            path.unlink()
