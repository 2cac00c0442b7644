"""The build: load the collection, run each format in stage order, publish once.

Nothing is written unless every stage succeeded (and, under --strict, nothing warned):
bad input leaves ``outputs/`` as it was.
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping

from . import cache
from .collector import paused
from .diagnostics import CarepressError, Diagnostic, Severity, error, fails
from .formats import BuildContext, Pending, Workers, free_spared, resolve, settle
from .stack import roomy
from .writer import Publication, prune, publish, remove

if TYPE_CHECKING:  # loaded lazily: an up-to-date build never imports pydantic or the renderers
    from .config import Config
    from .content import Loaded

DEFAULT_SOURCE_DIR = Path("source")
DEFAULT_CONFIG = DEFAULT_SOURCE_DIR / "collection.toml"
DEFAULT_OUT = Path("outputs")
FALLBACK_EPOCH = 946684800  # 2000-01-01T00:00:00Z: fixed, so builds stay reproducible


@dataclass
class Inputs:
    sources: list[Path]
    config_path: Path | None
    transcripts_dir: Path | None
    captions_dir: Path | None = None


def default_sources(folder: Path = DEFAULT_SOURCE_DIR) -> list[Path]:
    from .formats_in import PANDOC_READERS, TEXT_SUFFIXES

    suffixes = (TEXT_SUFFIXES - {""}) | set(PANDOC_READERS)
    return sorted(p for p in folder.glob("*") if p.is_file() and p.suffix.lower() in suffixes)


def resolve_inputs(sources: list[str] | None, config: str | None) -> Inputs:
    """--source/--config as given; with no --source, everything in source/ and its collection.toml."""
    if sources:
        paths = [Path(s) for s in sources]
        config_path = Path(config) if config else None
    else:
        paths = default_sources()
        if not paths:
            raise CarepressError([error("CP100", "no source files in source/ (give --source FILE)", "source/")])
        config_path = Path(config) if config else (DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None)
    transcripts = paths[0].parent / "transcripts"
    captions = paths[0].parent / "captions"
    return Inputs(paths, config_path, transcripts if transcripts.is_dir() else None,
                  captions if captions.is_dir() else None)


def read_timed_captions(folder: Path | None) -> dict[str, tuple[str, bytes]]:
    """Existing timed captions (<slug>.vtt / <slug>.srt) to import; .vtt wins over .srt."""
    found: dict[str, tuple[str, bytes]] = {}
    if folder is None:
        return found
    for suffix in (".srt", ".vtt"):
        for path in sorted(folder.glob(f"*{suffix}")):
            try:
                found[path.stem] = (str(path), path.read_bytes())
            except OSError as exc:
                raise CarepressError([error("CP100", f"cannot read captions: {exc.strerror}", str(path))]) from None
    return found


def load_inputs(inputs: Inputs) -> tuple[Config, Loaded]:
    from .config import Config, load_config
    from .content import load

    config = load_config(inputs.config_path) if inputs.config_path else Config()
    return config, load(inputs.sources, config, transcripts_dir=inputs.transcripts_dir)


def source_date_epoch(config: Config) -> int:
    """SOURCE_DATE_EPOCH if set; else the review date; else a fixed date."""
    value = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if value.isdigit():
        return int(value)
    if config.review_date:
        return int(_dt.datetime.combine(config.review_date, _dt.time(), _dt.timezone.utc).timestamp())
    return FALLBACK_EPOCH


@dataclass
class BuildResult:
    status: int
    diagnostics: list[Diagnostic] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    loaded: Loaded | None = None
    timings: dict[str, float] = field(default_factory=dict)
    cached: bool = False


Progress = Callable[[str], None]


def build(
    inputs: Inputs,
    formats: list[str],
    out: Path,
    strict: bool = False,
    options: Mapping[str, object] | None = None,
    progress: Progress | None = None,
    use_cache: bool = True,
    execution: Mapping[str, object] | None = None,
    workers: Workers | None = None,
) -> BuildResult:
    """One build. ``workers``: warm worker processes kept by the caller (``carepress watch``)
    and left running; without them, a build with more than one job starts its own."""
    # Paused for the whole build (workers turn it back on): loading and the stages make
    # many objects and little cyclic garbage, and the collector's passes cost a one-topic
    # rebuild's process about a tenth of a second.
    with _writing(out), paused():
        return roomy(_build_into, inputs, formats, out, strict, options, progress, use_cache, execution, workers)


@contextmanager
def _writing(out: Path):
    """One build at a time writes an output folder; another one (``carepress build`` while
    ``carepress watch`` builds into the same folder) waits. Builds share the folder's staging
    area and manifest: two at once could publish a mix, or fail. The lock is a POSIX record lock
    (``lockf``: this process's own, not inherited by the workers it forks, gone when it ends) on a
    file in the temp folder named after the output folder's real path (the output folder may not
    exist yet, and a failed build leaves it as it was). The holder removes the file when it is
    done, so none are left behind; a waiter that then holds a removed file tries again."""
    import fcntl
    import hashlib
    import tempfile

    name = hashlib.sha256(os.path.realpath(out).encode()).hexdigest()[:32]
    path = os.path.join(tempfile.gettempdir(), f"carepress-{name}.lock")
    handle = None
    told = False
    while handle is None:
        try:
            handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:  # no lock to be had (another user's file, say): build anyway, as before
            break
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held
            if not told:
                print(f"carepress: waiting for another build writing {out}/", file=sys.stderr, flush=True)
                told = True
            fcntl.lockf(handle, fcntl.LOCK_EX)
        try:
            same = os.stat(path).st_ino == os.fstat(handle).st_ino
        except OSError:
            same = False
        if not same:  # its holder removed it while we waited: lock the file that is there now
            os.close(handle)
            handle = None
    try:
        yield
    finally:
        if handle is not None:
            try:
                os.unlink(path)
            except OSError:
                pass
            os.close(handle)


def _build_into(inputs: Inputs, formats: list[str], out: Path, strict: bool, options: Mapping[str, object] | None,
                progress: Progress | None, use_cache: bool, execution: Mapping[str, object] | None,
                workers: Workers | None) -> BuildResult:
    free_spared()  # what the last build in this process spared (see formats.spare)
    step = progress or (lambda _msg: None)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    options = dict(options or {})
    key = cache.input_key(inputs, formats, options, strict) if use_cache else None
    if key is not None:
        recorded = cache.up_to_date(out, key)
        if recorded is not None:
            diags = [Diagnostic(d["code"], Severity(d["severity"]), d["message"], d["file"], d["line"])
                     for d in recorded]
            timings["total"] = time.perf_counter() - start
            return BuildResult(0, diags, timings=timings, cached=True)
    stages = resolve(formats)
    jobs = max(1, int((execution or {}).get("jobs") or 1))
    warm_ups = [fmt.warm_up for fmt in stages if fmt.warm_up]
    own = None
    rebuild = key is not None and cache.has_parts(out / cache.PARTS_DIR)  # an earlier build's parts are cached
    if workers is None or workers.jobs != jobs:
        workers = own = Workers(jobs, warm_ups, rebuild=rebuild) if jobs > 1 and warm_ups else None
    try:
        return _build(inputs, stages, out, strict, {**options, **(execution or {})}, step, key, workers, timings, start,
                      rebuild)
    finally:
        if own is not None:
            own.shutdown()


def _build(inputs: Inputs, stages: list, out: Path, strict: bool, options: dict[str, object], step: Progress,
           key: str | None, workers: Workers | None, timings: dict[str, float], start: float,
           rebuild: bool) -> BuildResult:
    """The build after the up-to-date check: load, render each stage, publish."""
    try:
        step("reading sources")
        config, loaded = load_inputs(inputs)
    except CarepressError as exc:
        return BuildResult(1, exc.diagnostics)
    timings["load"] = time.perf_counter() - start
    diagnostics = list(loaded.diagnostics)
    if fails(diagnostics, strict):
        return BuildResult(1, diagnostics, loaded=loaded, timings=timings)
    ctx = BuildContext(config=config, source_date_epoch=source_date_epoch(config), report=loaded.report,
                       options=options, diagnostics=diagnostics,
                       parts=cache.PartCache(out / cache.PARTS_DIR if out.is_dir() else None) if key is not None else None,
                       workers=workers)
    try:
        ctx.timed_captions = read_timed_captions(inputs.captions_dir)
    except CarepressError as exc:
        return BuildResult(1, diagnostics + exc.diagnostics, loaded=loaded, timings=timings)
    files: dict[str, bytes | Pending] = {}
    digests: dict[str, str] = {}  # each published file's SHA-256, for the manifest
    recorded = cache.recorded_files(out)  # what the last build published
    # Outputs are written (to a staging folder) while later stages render, and published together.
    publication = Publication(out, cache.unchanged_since(recorded, digests) if key else None)
    try:
        return _stages(loaded, ctx, stages, out, strict, key, files, digests, publication, step, timings, start,
                       rebuild, recorded)
    finally:
        publication.abort()  # after a commit, nothing is left to remove


def stale(recorded: Mapping[str, list], files: Mapping[str, object]) -> list[str]:
    """What the last build published (``recorded``: its manifest's files) that this one, making
    ``files``, does not: the outputs of a topic renamed or gone. Only in the folders this build
    makes files in (and, at the top, only files it makes), so a build of fewer formats
    (``--formats pdf``) leaves the others' outputs alone; never the part cache, which is pruned
    by what it keeps. A rebuild is then the folder a clean build makes (tested)."""
    areas = {name.split("/", 1)[0] for name in files if "/" in name}
    return sorted(name for name in recorded
                  if name not in files and "/" in name and name.split("/", 1)[0] in areas and not name.startswith("."))


def _stages(loaded: Loaded, ctx: BuildContext, stages: list, out: Path, strict: bool, key: str | None,
            files: dict[str, bytes | Pending], digests: dict[str, str], publication: Publication, step: Progress,
            timings: dict[str, float], start: float, rebuild: bool, recorded: Mapping[str, list]) -> BuildResult:
    """Start every stage's work, render the stages in order, publish what they made (and remove
    what the last build published there that this one does not make: :func:`stale`)."""
    diagnostics = ctx.diagnostics

    def failed(name: str, exc: Exception) -> BuildResult:
        if isinstance(exc, CarepressError):
            return BuildResult(1, ctx.diagnostics + exc.diagnostics, loaded=loaded, timings=timings)
        if os.environ.get("CAREPRESS_DEBUG"):
            raise exc
        # a renderer bug: report it cleanly, never a traceback
        message = f"{name} failed: {type(exc).__name__}: {exc} (set CAREPRESS_DEBUG=1 for a traceback)"
        return BuildResult(1, ctx.diagnostics + [error("CP130", message)], loaded=loaded, timings=timings)

    early: set[str] = set()  # files handed over before their stage returned, written already

    def hand_over(made: Mapping[str, bytes]) -> None:
        publication.add(made)
        early.update(made)

    ctx.early = hand_over
    rank = {fmt.name: n for n, fmt in enumerate(stages)}
    first, ranks = len(diagnostics), []  # each start's and render's diagnostics, then reported in stage order
    t0 = time.perf_counter()
    # Work for the worker processes first, each stage's in order. In a rebuild (the part cache
    # holds an earlier build's parts) the stage they warm up for starts first: its few documents
    # are then queued before the warm worker is ready (and the booklet is assembled as soon as
    # its new part is back: pdf._Assembly). A first build keeps the order: the captions' work is
    # queued before the PDFs', and this process never waits for it behind them.
    for fmt in sorted(stages, key=lambda fmt: rebuild and not fmt.warm_up):
        try:
            begin = fmt.starter()
            if begin is not None:
                ctx.started[fmt.name] = begin(loaded.collection, ctx)
        except Exception as exc:
            return failed(fmt.name, exc)
        ranks.extend([rank[fmt.name]] * (len(diagnostics) - first - len(ranks)))
    timings["start"] = time.perf_counter() - t0
    for fmt in stages:
        step(f"rendering {fmt.name}")
        t0 = time.perf_counter()
        try:
            produced = fmt.renderer()(loaded.collection, ctx)
        except Exception as exc:
            return failed(fmt.name, exc)
        ranks.extend([rank[fmt.name]] * (len(diagnostics) - first - len(ranks)))
        overlap = set(produced) & set(files)
        if overlap:
            return BuildResult(1, diagnostics + [error("CP130", f"{fmt.name} would overwrite {sorted(overlap)[0]}")])
        files.update(produced)
        ctx.rendered.update(produced)
        try:
            publication.add({name: data for name, data in produced.items()
                             if not isinstance(data, Pending) and name not in early})
        except CarepressError as exc:
            return failed(fmt.name, exc)
        timings[fmt.name] = time.perf_counter() - t0
    ranks.extend([len(stages)] * (len(diagnostics) - first - len(ranks)))
    diagnostics[first:] = [d for _, d in sorted(zip(ranks, diagnostics[first:]), key=lambda pair: pair[0])]
    try:
        if ctx.parts is not None:  # the cache's packs, written while what is pending is made
            packs = ctx.parts.files()
            files.update(packs)
            publication.add(packs)
    except Exception as exc:
        return failed("writing outputs", exc)
    try:
        t0 = time.perf_counter()
        pending = [name for name, data in files.items() if isinstance(data, Pending)]
        files = settle(files)
        timings["waiting"] = timings.get("waiting", 0.0) + time.perf_counter() - t0
    except Exception as exc:  # made in a child process: reported like any other failure
        return failed("a worker process", exc)
    if fails(ctx.diagnostics, strict):
        return BuildResult(1, ctx.diagnostics, loaded=loaded, timings=timings)
    step("writing outputs")
    t0 = time.perf_counter()
    try:
        publication.add({name: files[name] for name in pending})  # made in a child process: not added yet
        stats = publication.commit()
        remove(out, stale(recorded, files))
        if ctx.parts is not None:
            prune(out, cache.PARTS_DIR, ctx.parts.keep())
        if key is not None:  # written last, with the files' stat as published: a fast up-to-date check
            for name in files.keys() - digests.keys():
                digests[name] = cache.sha256(files[name])
            manifest = cache.manifest_bytes(key, digests, [d.to_dict() for d in ctx.diagnostics], stats)
            publish({cache.MANIFEST: manifest}, out)
    except Exception as exc:
        return failed("writing outputs", exc)
    timings["publish"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - start
    return BuildResult(0, ctx.diagnostics, files, loaded, timings)
