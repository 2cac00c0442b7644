"""The registry of output formats, in their fixed stage order.

A format's module has ``render(collection, ctx) -> dict[str, bytes]``: relative
paths under ``outputs/`` to file contents. Renderers do no file I/O. Modules are
imported only when their format is built, so heavy libraries (WeasyPrint) load
only when needed. A module may also have ``start(collection, ctx)``: the build calls
every stage's ``start`` first, so work handed to worker processes (PDFs, captions)
runs while this process renders the stages before it.
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Callable, Mapping

from ..stack import roomy

if TYPE_CHECKING:  # type names only: the registry stays cheap to import (a cached build needs no pydantic)
    from ..cache import PartCache
    from ..config import Config
    from ..dedupe import DedupeResult
    from ..diagnostics import Diagnostic
    from ..model import Collection


@dataclass
class BuildContext:
    config: Config
    source_date_epoch: int
    report: DedupeResult | None = None
    # Files of the stages before this one; a file still being made in a child process (the
    # booklet) is a Forked: its .result() waits for the bytes.
    rendered: dict[str, "bytes | Forked"] = field(default_factory=dict)
    options: Mapping[str, object] = field(default_factory=dict)  # CLI overrides, e.g. paper, profile
    diagnostics: list[Diagnostic] = field(default_factory=list)
    # Existing timed captions to import, by topic slug: (display path, raw bytes) read from
    # <source dir>/captions/<slug>.vtt or .srt by the build (renderers do no file I/O).
    timed_captions: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    # Rendered parts from earlier builds (pipeline.cache.PartCache); None: render everything.
    parts: "PartCache | None" = None
    # Worker processes shared by the stages (see Workers); None: render in this process.
    workers: "Workers | None" = None
    # Page counts of the PDFs made so far, by path (the HTML site shows them).
    pages: dict[str, int] = field(default_factory=dict)
    # What each format's ``start`` returned (see Format.starter), by format name.
    started: dict[str, object] = field(default_factory=dict)
    # Hands over files a stage has made before it returns (the PDF stage's handouts, as each
    # worker's chunk comes back), so the build writes them to its staging folder meanwhile, not
    # all at the end; the stage returns them too. None: nothing is handed over early.
    early: Callable[[Mapping[str, bytes]], None] | None = None


def fork_pool(jobs: int):
    """A pool of ``jobs`` forked worker processes (they inherit the parent's loaded modules)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    class RoomyPool(ProcessPoolExecutor):
        """Each task called on a roomy stack (:mod:`pipeline.stack`): the stack a worker's tasks
        started on had them map and unmap frame chunks about 190,000 times each in a cold build."""

        def submit(self, fn, /, *args, **kwargs):
            return super().submit(roomy, fn, *args, **kwargs)

    return RoomyPool(jobs, mp_context=multiprocessing.get_context("fork"), initializer=_worker_start,
                     initargs=(os.getpid(),))


def _worker_start(parent: int) -> None:
    """A forked worker: what it inherited is never garbage (``gc.freeze``), and the renderers'
    many short-lived objects are collected less often (a few per cent of their time otherwise),
    but collected: a build pauses the collector (``collector.paused``) and its workers inherit that.
    Ctrl-C is the parent's to handle (it reports it and ends its workers): not a traceback from each."""
    import gc

    _ignore_interrupts()
    _end_with_parent(parent)
    gc.freeze()
    gc.set_threshold(20_000, 20, 50)
    gc.enable()


def _end_with_parent(parent: int) -> None:
    """On Linux, the kernel ends this worker if its parent dies without shutting it down
    (``kill -9``): otherwise it would wait for work forever. Elsewhere, nothing."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before that took effect
        os._exit(1)


def _ignore_interrupts() -> None:
    """In a forked worker or child: Ctrl-C is the parent's to handle; SIGTERM (sent to every
    process of a ``carepress watch`` by ``pkill -f`` or a service manager) ends it quietly,
    not through the handler it inherited from ``carepress watch`` (a traceback from each)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


class Workers:
    """One build's forked worker processes, shared by its stages and shut down by the build.

    The build starts them before it reads the sources, and each format with a ``warm_up``
    has them load what it renders with (WeasyPrint and its fonts take most of a second):
    that happens on the other core while this process loads, deduplicates and hashes, so
    the first document does not wait for it.

    A rebuild (``rebuild``: earlier parts are cached) likely renders a few documents: then a
    single worker warms up (``first``) and the ``pool`` of ``jobs`` workers starts only if a
    stage has much to do, so idle warm-ups take no CPU from this process's own work. Its warm-up
    loads but does not rehearse (``rehearse=False``): its first document is queued by the time
    it has loaded, so a rehearsal would only hold that document back.
    """

    def __init__(self, jobs: int, warm_ups: list[str], rebuild: bool = False):
        self.jobs = jobs
        self.first = fork_pool(1) if rebuild else None
        self._pool = None if rebuild else fork_pool(jobs)
        for pool, count in ((self.first, 1), (self._pool, jobs)):
            for _ in range(count if pool is not None else 0):
                pool.submit(_warm_up, warm_ups, not rebuild)

    @property
    def pool(self):
        """``jobs`` workers for much work (started on first use in a rebuild)."""
        if self._pool is None:
            self._pool = fork_pool(self.jobs)
        return self._pool

    def working(self) -> bool:
        """Whether every started pool still takes work (a worker that died breaks its pool)."""
        from concurrent.futures.process import BrokenProcessPool

        try:
            for pool in (self.first, self._pool):
                if pool is not None:
                    pool.submit(int).result()
        except BrokenProcessPool:
            return False
        return True

    def shutdown(self) -> None:
        for pool in (self.first, self._pool):
            if pool is not None:
                pool.shutdown(cancel_futures=True)


def _warm_up(targets: list[str], rehearse: bool = True) -> None:
    for target in targets:
        module, _, function = target.partition(":")
        getattr(importlib.import_module(module), function)(rehearse=rehearse)
    # What a worker has loaded to render (WeasyPrint, fonts, stylesheets) lives as long as it
    # does: kept out of the garbage collector's full passes, which otherwise walk it again and
    # again (rendering 240 handouts in a process that had loaded the collection too: 0.6 of 10
    # CPU-s in full passes, 0.25 with it frozen).
    gc.freeze()


class Pending:
    """A file still being made when its stage returns: ``result()`` waits for its bytes. The
    build publishes it after every stage has rendered."""

    def result(self) -> bytes:
        raise NotImplementedError


class Later(Pending):
    """A file made from others still being made (the site's index shows the booklet's size):
    ``make()`` is called when the build waits for its pending files, once."""

    def __init__(self, make: Callable[[], bytes]):
        self._make = make
        self._value: bytes | None = None

    def result(self) -> bytes:
        if self._value is None:
            self._value = self._make()
        return self._value


class Forked(Pending):
    """``make()`` run in a forked child process while this one goes on: the child starts from
    this process's memory as it is (open PDFs included), so only the result crosses back.
    ``result()`` waits for the bytes, or raises what the child raised.

    ``fed``: the child waits for one value, given by :meth:`feed` (from any thread), and runs
    ``make(value)``; ``None`` ends it. So a child can be forked by this process's main thread,
    at a point where it holds no lock, before what it needs is there: forked by another thread,
    it could inherit an import lock held by the main thread forever (a module half imported
    there at that instant) and hang on its first import of that module. ``prepare``: what a fed
    child does before it waits (its result is ``make``'s first argument; what it raises, the
    child's result once fed)."""

    def __init__(self, make: Callable[..., bytes], fed: bool = False, prepare: Callable[[], object] | None = None):
        import multiprocessing

        context = multiprocessing.get_context("fork")
        self._receive, send = context.Pipe(duplex=False)
        self._take, self._give = context.Pipe(duplex=False) if fed else (None, None)
        self._process = context.Process(target=_forked, args=(make, send, self._take, self._give, prepare),
                                        daemon=True)
        self._process.start()
        send.close()
        if self._take is not None:
            self._take.close()
        self._value: tuple[bool, object] | None = None

    def feed(self, value: object) -> None:
        """Give a ``fed`` child its input (``None``: it ends without making anything)."""
        try:
            self._give.send(value)
        finally:
            self._give.close()

    def result(self) -> bytes:
        if self._value is None:
            try:
                self._value = self._receive.recv()
            except EOFError:  # the child died without a word (killed, out of memory)
                self._process.join()
                self._value = (False, RuntimeError(f"worker process ended with status {self._process.exitcode}"))
            finally:
                self._receive.close()
            # A child that answered is ending (_end_now); it is reaped later, by the next
            # process started (multiprocessing does that) or at exit, not waited for here.
        ok, value = self._value
        if not ok:
            raise value  # type: ignore[misc]
        return value  # type: ignore[return-value]


# What a build has finished with but whose freeing would only delay it (a tenth of a second for
# the booklet's opened parts, once the child assembling it has its copy): kept until the next
# build starts, or until ``carepress watch`` has reported the build; ``carepress build`` ends
# without freeing them.
_SPARED: list = []


def spare(*objects) -> None:
    _SPARED.extend(objects)


def free_spared() -> None:
    _SPARED.clear()


def _forked(make: Callable[..., bytes], send, take, give, prepare: Callable[[], object] | None = None) -> None:
    _ignore_interrupts()
    if give is not None:
        give.close()  # the parent's end: with it closed here, the parent gone is an end of input
    try:
        if take is None:
            outcome: tuple[bool, object] = (True, make())
        else:
            failed = None
            try:
                if prepare is not None:
                    make = partial(make, prepare())
            except Exception as exc:  # raised once fed: the parent feeds this child in any case
                failed = exc
            try:
                given = take.recv()
            except EOFError:  # the parent went without feeding this child
                given = None
            if given is None:
                return
            if failed is not None:
                raise failed
            outcome = (True, make(given))
    except Exception as exc:  # sent back and raised in the parent, as if made there
        outcome = (False, exc)
    try:
        send.send(outcome)
    except Exception as exc:  # an exception that does not pickle
        send.send((False, RuntimeError(f"{type(outcome[1]).__name__}: {outcome[1]} ({exc})")))
    finally:
        send.close()
    _end_now()


def _end_now() -> None:
    """A child that has sent its result ends at once: not through multiprocessing's epilogue
    (35 ms), and without its standard streams, so that a reader of the build's output (a
    script capturing it) is not held until the kernel has freed this child's memory (another
    20 ms, which the parent does not wait for either: see Forked.result)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os.closerange(0, 3)
    os._exit(0)


def settle(files: Mapping[str, "bytes | Pending"]) -> dict[str, bytes]:
    """The files with every one still being made (:class:`Pending`) waited for."""
    return {name: data.result() if isinstance(data, Pending) else data for name, data in files.items()}


Renderer = Callable[["Collection", BuildContext], dict[str, bytes]]
Starter = Callable[["Collection", BuildContext], object]


@dataclass(frozen=True)
class Format:
    name: str
    module: str
    description: str
    requires: tuple[str, ...] = ()
    # "module:function" run in each worker process before any work arrives, given ``rehearse``:
    # whether to do a little work too (when the worker starts before there is any: see Workers)
    warm_up: str = ""

    def renderer(self) -> Renderer:
        return importlib.import_module(self.module).render

    def starter(self) -> Starter | None:
        """The module's ``start(collection, ctx)``, if it has one: called for every stage right
        after loading, before any stage renders, to hand long work to the worker processes;
        its ``render`` collects it (``ctx.started[name]`` holds what ``start`` returned)."""
        return getattr(importlib.import_module(self.module), "start", None)


# Stage order is fixed: a format may use the files of those before it (HTML links to
# PDF/EPUB with their sizes, and to the captions). The EPUB needs nothing else: it comes
# first, made here while the workers warm up and caption, not after the PDFs with one core idle.
FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("content", "pipeline.formats.content", "content.json (the model) and dedupe-report.json"),
        Format("epub", "pipeline.formats.epub", "EPUB 3 e-book"),
        Format("captions", "pipeline.formats.captions", "WebVTT, SRT and TTML/IMSC captions per topic"),
        Format("pdf", "pipeline.formats.pdf", "PDF/UA handouts, large print and the booklet",
               warm_up="pipeline.formats.pdfrender:warm_up"),
        Format("html", "pipeline.formats.html", "accessible HTML site", requires=("captions", "pdf", "epub")),
    )
}


def available() -> list[str]:
    """Formats whose module exists (a format still being built is not offered)."""
    out = []
    for name, fmt in FORMATS.items():
        if importlib.util.find_spec(fmt.module) is not None:
            out.append(name)
    return out


def resolve(names: list[str]) -> list[Format]:
    """The formats asked for plus what they require, in stage order."""
    wanted: set[str] = set()

    def add(name: str) -> None:
        if name in wanted:
            return
        wanted.add(name)
        for dep in FORMATS[name].requires:
            if dep in available():  # a required stage not built yet is simply skipped
                add(dep)

    for name in names:
        add(name)
    wanted.add("content")
    return [fmt for name, fmt in FORMATS.items() if name in wanted]


import importlib.util  # noqa: E402  (used by available())
