"""The one place that writes outputs: atomic, and never outside the output folder."""

from __future__ import annotations

import os
import queue
import shutil
import stat
import threading
from pathlib import Path
from typing import Callable, Iterable, Mapping

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


def _inside(root: str, real: str) -> bool:
    """Whether ``real`` (a resolved path) is the resolved output folder ``root`` or within it."""
    return real == root or real.startswith(root + os.sep)


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


STAGING = ".carepress-staging"  # inside the output folder: new files wait here until the build succeeds


class Publication:
    """A build's outputs, written as they become known and published together.

    ``add(files)`` checks the paths at once; each file that is not already there as it should
    be (``unchanged(name, path, stat, data)``: by default, the same bytes; the build passes a
    cheaper check from its manifest) is written under ``out_dir/.carepress-staging/`` by a
    thread while the build goes on (creating thousands of files is slow on some disks).
    ``commit()`` renames them all into place, a tenth of a creation's cost each, and returns
    every file's stat as published; ``abort()`` removes the staging folder. Nothing a reader
    of ``out_dir`` sees changes before ``commit()``: a failed build leaves it as it was.

    A path whose folder resolves outside ``out_dir`` (a symlink planted in outputs/, say) and
    a target that is a symbolic link are refused (CP120); a file that cannot be written is
    CP121. Plain string paths, ``os`` calls and one ``lstat`` a file.
    """

    def __init__(self, out_dir: Path, unchanged: Unchanged | None = None, background: bool = True):
        self.out_dir, self.unchanged = out_dir, unchanged or _same_bytes
        self.stats: dict[str, os.stat_result] = {}
        self._moves: list[tuple[str, str]] = []  # (staged, target)
        self._folders: dict[str, tuple[str, str]] = {}  # folder -> (its real path, its staging path)
        self._failure: BaseException | None = None
        self._root = self._staging = ""
        self._made: list[str] = []  # folders made, outermost first
        self._queue: queue.SimpleQueue | None = queue.SimpleQueue() if background else None
        self._thread = threading.Thread(target=self._drain, daemon=True) if background else None
        if self._thread is not None:
            self._thread.start()

    def add(self, files: Mapping[str, bytes]) -> None:
        for name in files:
            check_path(name)
        if self._queue is not None:
            self._queue.put(dict(files))
        else:
            self._write(files)

    def commit(self) -> dict[str, os.stat_result]:
        self._finish()
        try:
            for staged, target in self._moves:
                os.replace(staged, target)
        except OSError as exc:
            raise CarepressError([error("CP121", f"cannot write {target}: {exc.strerror}")]) from None
        finally:
            self._clear()
        self._made = []  # published: the folders stay
        return self.stats

    def abort(self) -> None:
        """Undo everything: the staging folder, and any folder this made (a failed build leaves
        the output folder as it was, not even an empty ``pdf/`` more)."""
        try:
            self._finish()
        except Exception:  # noqa: BLE001  (aborting: whatever went wrong was reported already)
            pass
        self._clear()
        for folder in reversed(self._made):
            try:
                os.rmdir(folder)
            except OSError:
                pass  # not empty: something else is in it now
        self._made = []

    def _finish(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        if self._failure is not None:
            raise self._failure

    def _drain(self) -> None:
        while (files := self._queue.get()) is not None:
            if self._failure is None:
                try:
                    self._write(files)
                except BaseException as exc:  # raised by commit() in the build's thread
                    self._failure = exc

    def _makedirs(self, path: str) -> None:
        """os.makedirs, remembering the folders it made (for abort)."""
        missing = []
        while not os.path.isdir(path):
            missing.append(path)
            path = os.path.dirname(path)
        os.makedirs(missing[0] if missing else path, exist_ok=True)
        self._made.extend(reversed(missing))

    def _start(self) -> None:
        self._makedirs(os.path.abspath(self.out_dir))
        self._root = os.path.realpath(self.out_dir)
        self._staging = os.path.join(self._root, STAGING)
        self._clear()  # a build that was killed may have left one
        os.mkdir(self._staging)

    def _clear(self) -> None:
        if not self._staging:
            return
        if os.path.islink(self._staging):
            os.unlink(self._staging)
        else:
            shutil.rmtree(self._staging, ignore_errors=True)

    def _folder(self, name: str, folder: str) -> tuple[str, str]:
        if folder not in self._folders:  # once per folder: thousands of files share a few
            self._makedirs(os.path.join(self._root, folder))
            real = os.path.realpath(os.path.join(self._root, folder))
            if not _inside(self._root, real):
                raise CarepressError([error("CP120", f"refused output path {name!r}: it leads outside {self.out_dir}")])
            staged = os.path.join(self._staging, folder)
            os.makedirs(staged, exist_ok=True)
            self._folders[folder] = (real, staged)
        return self._folders[folder]

    def _write(self, files: Mapping[str, bytes]) -> None:
        if not self._root:
            self._start()
        for name in sorted(files):
            folder, _, base = name.rpartition("/")
            data = files[name]
            try:
                real, staging = self._folder(name, folder)
                target = os.path.join(real, base)
                try:
                    st = os.lstat(target)
                except FileNotFoundError:
                    st = None
                if st is not None and stat.S_ISLNK(st.st_mode):
                    raise CarepressError([error("CP120", f"refused output path {name!r}: it is a symbolic link")])
                if st is not None and stat.S_ISREG(st.st_mode) and self.unchanged(name, target, st, data):
                    self.stats[name] = st
                    continue  # unchanged: keep its timestamp
                staged = os.path.join(staging, base)
                fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fchmod(fd, 0o644)
                    self.stats[name] = os.fstat(fd)  # the same inode, size and mtime once renamed
                self._moves.append((staged, target))
            except OSError as exc:
                raise CarepressError([error("CP121", f"cannot write {name}: {exc.strerror}")]) from None


def publish(files: Mapping[str, bytes], out_dir: Path, unchanged: Unchanged = _same_bytes) -> dict[str, os.stat_result]:
    """Write every file under out_dir atomically, now (see :class:`Publication`); return their stats."""
    publication = Publication(out_dir, unchanged, background=False)
    try:
        publication.add(files)
        return publication.commit()
    except BaseException:
        publication.abort()
        raise


def remove(out_dir: Path, names: Iterable[str]) -> None:
    """Delete these files of ``out_dir`` (relative paths, each checked): outputs an earlier build
    published that this one no longer makes. A name that is not a regular file (a folder, a
    symbolic link), or whose folder leads outside ``out_dir``, is left alone; one already gone is
    no error, and neither is a name no build would publish (a manifest edited by hand)."""
    root = os.path.realpath(out_dir)
    for name in names:
        try:
            folder, _, base = check_path(name).rpartition("/")
        except CarepressError:  # not a name any build publishes (a manifest edited by hand)
            continue
        real = os.path.realpath(os.path.join(root, folder))
        if not _inside(root, real):
            continue
        target = os.path.join(real, base)
        try:
            if stat.S_ISREG(os.lstat(target).st_mode):
                os.unlink(target)
        except OSError:
            continue


def prune(out_dir: Path, folder: str, keep: set[str]) -> None:
    """Delete files directly in ``out_dir/folder`` whose names are not in ``keep`` (a cache's stale parts)."""
    check_path(folder)
    target = out_dir / folder
    if target.is_symlink() or not target.is_dir():
        return
    for path in target.iterdir():
        if path.is_file() and not path.is_symlink() and path.name not in keep:
            path.unlink()
