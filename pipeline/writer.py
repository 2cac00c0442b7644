"""The one place that writes outputs: atomic, and never outside the output folder."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path, PurePosixPath
from typing import Mapping

from .diagnostics import CarepressError, error


def check_path(relative: str) -> PurePosixPath:
    """A safe relative POSIX path, or CarepressError (CP120)."""
    path = PurePosixPath(relative)
    if (
        not relative
        or "\\" in relative
        or "\x00" in relative
        or path.is_absolute()
        or any(part in ("", ".", "..") for part in relative.split("/"))
    ):
        raise CarepressError([error("CP120", f"refused output path {relative!r}: not a plain relative path")])
    return path


def publish(files: Mapping[str, bytes], out_dir: Path) -> list[Path]:
    """Write every file under out_dir atomically (temp file + os.replace).

    All paths are checked before anything is written; a path whose parent resolves
    outside out_dir (a symlink planted in outputs/, say) is refused.
    """
    paths = {name: check_path(name) for name in files}
    out_dir.mkdir(parents=True, exist_ok=True)
    root = out_dir.resolve()
    written: list[Path] = []
    resolved: dict[Path, Path] = {}
    for name in sorted(files):
        target = root.joinpath(*paths[name].parts)
        if target.parent not in resolved:  # once per folder: thousands of files share a few
            target.parent.mkdir(parents=True, exist_ok=True)
            resolved[target.parent] = target.parent.resolve()
        parent = resolved[target.parent]
        if parent != root and root not in parent.parents:
            raise CarepressError([error("CP120", f"refused output path {name!r}: it leads outside {out_dir}")])
        if target.is_symlink():
            raise CarepressError([error("CP120", f"refused output path {name!r}: it is a symbolic link")])
        try:
            if target.is_file() and target.read_bytes() == files[name]:
                written.append(target)
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
        written.append(target)
    return written


def prune(out_dir: Path, folder: str, keep: set[str]) -> None:
    """Delete files directly in ``out_dir/folder`` whose names are not in ``keep`` (a cache's stale parts)."""
    check_path(folder)
    target = out_dir / folder
    if target.is_symlink() or not target.is_dir():
        return
    for path in target.iterdir():
        if path.is_file() and not path.is_symlink() and path.name not in keep:
            path.unlink()
