"""``carepress watch``: build, then build again whenever an input changes.

Whoever edits the sources rebuilds after every edit. A fresh ``carepress build`` spends most
of a one-topic rebuild getting ready: starting Python, importing pydantic and Jinja, and in
a worker process importing WeasyPrint and parsing its fonts and stylesheets (most of a
second). The watching process does that once: it keeps its imports and its warm worker
processes between builds. Each build is an ordinary :func:`build.build` (the same cache, the
same all-or-nothing publication, the same bytes as a clean build); only the processes are kept.

Inputs are polled, by stat (size, modification time, inode) of every source, config,
transcript and caption file, and the listing of the source folder when the sources are its
files: no file-system notification library, and an editor that saves by renaming is seen too.
A change is built once two polls in a row see the same files (a save can take more than one
write: an empty file between the two is not built), and a change seen while a build runs starts
another build when it ends. If carepress's own files
change (an upgrade), watching stops: the workers hold the old templates and stylesheets.
"""

from __future__ import annotations

import os
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

from . import cache
from .build import Inputs, build
from .diagnostics import CarepressError, Diagnostic
from .formats import Workers, free_spared, resolve

Stat = tuple[int, int, int] | None


def snapshot(inputs: Inputs) -> tuple[tuple[str, Stat], ...]:
    """What is compared between polls: each input file's size, mtime and inode (None: missing)."""
    seen: list[tuple[str, Stat]] = []
    for path in sorted(set(cache.input_files(inputs))):
        try:
            st = os.stat(path)
            seen.append((str(path), (st.st_size, st.st_mtime_ns, st.st_ino)))
        except OSError:
            seen.append((str(path), None))
    return tuple(seen)


@dataclass
class Watch:
    """What to build, and how; ``inputs()`` resolves the sources again before every poll (a
    file added to the source folder is a change)."""

    inputs: Callable[[], Inputs]
    formats: list[str]
    out: Path
    strict: bool = False
    options: Mapping[str, object] | None = None
    jobs: int = 1
    interval: float = 0.25


def run(watch: Watch, say: Callable[[str], None], diagnostics: Callable[[Sequence[Diagnostic]], None]) -> int:
    """Build now and after every change until interrupted (Ctrl-C or SIGTERM): then 0. If
    carepress's own files change: 1."""
    stop = _Stop()
    stages = resolve(watch.formats)
    warm_ups = [fmt.warm_up for fmt in stages if fmt.warm_up]
    workers = Workers(watch.jobs, warm_ups) if watch.jobs > 1 and warm_ups else None
    package = cache.package_fingerprint()
    last: tuple | None = None  # what was built
    settling: tuple | None = None  # a change seen once: built when the next poll sees it unchanged
    told = False
    try:
        while True:
            problems: list[Diagnostic] = []
            try:
                inputs = watch.inputs()
                now = ("inputs", snapshot(inputs))
            except CarepressError as exc:  # no source file at all, say
                problems = exc.diagnostics
                inputs, now = None, ("error", tuple(str(d) for d in problems))
            if now != last and now != settling and last is not None:
                settling = now  # a save can take more than one write (truncate, write; or several files)
            elif now != last:
                last = settling = now
                cache.package_fingerprint.cache_clear()
                if cache.package_fingerprint() != package:
                    say("carepress's own files changed (an upgrade?): start `carepress watch` again")
                    return 1
                if inputs is None:
                    diagnostics(problems)
                    say("cannot build: waiting for the sources to be fixed")
                else:
                    workers = _build_once(watch, inputs, workers, warm_ups, say, diagnostics)
                    with stop.held():
                        _between_builds(stages)
                if not told:
                    say(f"watching {_what(inputs)} for changes (Ctrl-C to stop)")
                    told = True
            stop.check()
            time.sleep(watch.interval)
    except KeyboardInterrupt:
        say("stopped watching")
        return 0
    finally:
        stop.restore()
        if workers is not None:
            workers.shutdown()


class _Stop:
    """Ctrl-C (SIGINT) and ``kill`` (SIGTERM: a service manager stopping us) end the watch, as a
    KeyboardInterrupt: the worker processes are shut down, not left running without a parent.

    The request is also recorded, and checked before every poll: Python drops an interrupt
    raised while it runs a finalizer (an object's ``__del__``, as what a build made is freed;
    it prints "Exception ignored"), and the watch went on watching (a test saw no "stopped
    watching" in three minutes). Between builds, where most of that is freed and collected
    (``held``), the handler only records it, for that check."""

    def __init__(self) -> None:
        self.requested = False
        self._holding = False
        self._before = {number: signal.signal(number, self._handle) for number in (signal.SIGINT, signal.SIGTERM)}

    def _handle(self, _signum, _frame) -> None:
        self.requested = True
        if not self._holding:
            raise KeyboardInterrupt

    @contextmanager
    def held(self):
        self._holding = True
        try:
            yield
        finally:
            self._holding = False

    def check(self) -> None:
        if self.requested:
            raise KeyboardInterrupt

    def restore(self) -> None:
        for number, handler in self._before.items():
            signal.signal(number, handler)


def _build_once(watch: Watch, inputs: Inputs, workers: Workers | None, warm_ups: list[str],
                say: Callable[[str], None], diagnostics: Callable[[Sequence[Diagnostic]], None]) -> Workers | None:
    result = build(inputs, watch.formats, watch.out, watch.strict, watch.options,
                   execution={"jobs": watch.jobs}, workers=workers)
    diagnostics(result.diagnostics)
    stamp = time.strftime("%H:%M:%S")
    seconds = result.timings.get("total", 0.0)
    if result.status != 0:
        say(f"[{stamp}] build failed; {watch.out}/ left as it was")
        if workers is not None and not workers.working():  # one died with the build: start afresh
            workers.shutdown()
            workers = Workers(watch.jobs, warm_ups)
    elif result.cached:
        say(f"[{stamp}] {watch.out}/ is up to date")
    else:
        say(f"[{stamp}] built {watch.out}/ in {seconds:.2f} s")
    return workers


def _between_builds(stages: list) -> None:
    """While the watch waits for a change: what a build imports (pydantic, the models, each
    stage's module: an up-to-date build imports none of it, so the first edit paid 0.26 s for
    them) is imported now, and what the last build spared (see formats.spare) is freed and its
    garbage collected now, not by a full pass in the middle of the next build (0.1 s of a
    one-topic rebuild). A child that assembled the last booklet, ended but not waited for
    (formats.Forked.result), is reaped."""
    import gc
    import importlib
    import multiprocessing

    free_spared()
    multiprocessing.active_children()  # reaps the children that have ended

    for name in (".config", ".content"):
        importlib.import_module(name, __package__)
    for fmt in stages:
        fmt.starter()
    gc.collect()


def _what(inputs: Inputs | None) -> str:
    if inputs is None:
        return "the sources"
    names = [str(p) for p in inputs.sources] + ([str(inputs.config_path)] if inputs.config_path else [])
    return ", ".join(names) if len(names) <= 3 else f"{len(names)} files"

