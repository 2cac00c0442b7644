"""Command line: ``main(argv) -> int``; never a traceback for bad input."""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from pathlib import Path
from typing import Sequence

from . import __version__
from .build import DEFAULT_OUT, build, load_inputs, resolve_inputs
from .diagnostics import CarepressError, Diagnostic, Severity, fails
from .formats import FORMATS, available

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
SCHEMA_PATH = Path("schema") / "collection.schema.json"


def _print_diagnostics(diagnostics: Sequence[Diagnostic], quiet_info: bool = True) -> None:
    for d in diagnostics:
        if quiet_info and d.severity is Severity.INFO:
            continue
        print(d, file=sys.stderr)


def _format_list(values: list[str] | None) -> list[str]:
    names: list[str] = []
    for value in values or []:
        names.extend(v.strip() for v in value.split(",") if v.strip())
    return names


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="carepress",
        description="Turn raw patient-education text into handouts, an e-book, a website and captions.",
    )
    parser.add_argument("--version", action="version", version=f"carepress {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add_inputs(p: argparse.ArgumentParser) -> None:
        p.add_argument("--source", action="append", metavar="PATH",
                       help="source file (.txt, .md, .html, .docx); repeatable. Default: every file in source/")
        p.add_argument("--config", metavar="FILE",
                       help="collection config (TOML). Default: source/collection.toml with the default source")

    def add_build(p: argparse.ArgumentParser) -> None:
        add_inputs(p)
        p.add_argument("--formats", action="append", metavar="LIST",
                       help=f"comma-separated formats ({', '.join(FORMATS)}); default: all available")
        p.add_argument("--out", default=str(DEFAULT_OUT), metavar="DIR", help="output folder (default: outputs)")
        p.add_argument("--strict", action="store_true", help="fail on warnings too")
        p.add_argument("--paper", choices=["letter", "a4"], help="PDF paper size (overrides config)")
        p.add_argument("--profile", choices=["dcmp", "netflix-en", "bbc"],
                       help="caption guideline profile (overrides config)")
        p.add_argument("--jobs", type=int, default=_cores(), metavar="N",
                       help="processes for rendering (default: the number of cores)")

    b = sub.add_parser("build", help="build outputs from the sources")
    add_build(b)
    b.add_argument("--quiet", action="store_true", help="no progress display or summary")
    b.add_argument("--force", action="store_true", help="render everything even when outputs are up to date")

    w = sub.add_parser("watch", help="build, then build again whenever a source or config file changes",
                       description="Build, then build again after every change to a source, config, transcript "
                                   "or caption file. The worker processes stay ready between builds, so an "
                                   "edit is published sooner than by a fresh `carepress build`.")
    add_build(w)
    w.add_argument("--interval", type=float, default=0.25, metavar="SECONDS",
                   help="how often to look for changes (default: 0.25)")

    v = sub.add_parser("validate", help="check sources, configs or content.json files; write nothing")
    v.add_argument("paths", nargs="*", metavar="PATH")
    v.add_argument("--config", metavar="FILE")
    v.add_argument("--strict", action="store_true")

    d = sub.add_parser("dedupe", help="print the dedupe (merge) report")
    add_inputs(d)
    d.add_argument("--json", action="store_true", help="print the full report as JSON")

    s = sub.add_parser("schema", help="write schema/collection.schema.json from the models")
    s.add_argument("--check", action="store_true", help="exit 1 if the committed schema differs")
    s.add_argument("--out", default=str(SCHEMA_PATH), metavar="FILE")

    c = sub.add_parser("captions", help="caption tools")
    csub = c.add_subparsers(dest="captions_command", metavar="SUBCOMMAND")
    lint = csub.add_parser("lint", help="check VTT/SRT files against a captioning profile")
    lint.add_argument("files", nargs="+", metavar="FILE")
    lint.add_argument("--profile", choices=["dcmp", "netflix-en", "bbc"], default="dcmp")

    bench = sub.add_parser("bench", help="run the benchmarks")
    bench.add_argument("--topics", type=int, default=1000)
    bench.add_argument("--segments", type=int, default=100_000)
    bench.add_argument("--only", action="append", metavar="NAME", help="run only these benchmarks")
    bench.add_argument("--naive-sample", type=int, default=0, metavar="N",
                       help="time the naive route on N topics spread over the collection, not on every topic "
                            "(every topic takes 0.6 to 1.3 s: 10 to 20 minutes for 1,000)")
    bench.add_argument("--jobs", type=int, default=_cores(), metavar="N",
                       help="processes for the builds (default: the number of cores)")
    bench.add_argument("--out", default=str(DEFAULT_OUT), metavar="DIR",
                       help="where bench/bench.json and the chart go (default: outputs)")
    return parser


def _summary(result, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=False, highlight=False, width=None if sys.stdout.isatty() else 120)
    counts = result.loaded.report.counts()
    table = Table(title="carepress build", show_header=True, header_style="bold")
    table.add_column("stage")
    table.add_column("files", justify="right")
    table.add_column("seconds", justify="right")
    per_stage: dict[str, int] = {}
    for name in result.files:
        if name.startswith("."):
            continue
        stage = name.split("/", 1)[0] if "/" in name else "content"
        per_stage[stage] = per_stage.get(stage, 0) + 1
    for stage, seconds in result.timings.items():
        if stage == "total":
            continue
        table.add_row(stage, str(per_stage.get(stage, 0)), f"{seconds:.2f}")
    console.print(table)
    console.print(
        f"{counts['segments']} segments -> {counts['topics']} topics "
        f"({counts['exact']} exact, {counts['title_variant']} title-variant, {counts['near_duplicate']} near-duplicate "
        f"merges; {counts['dropped']} dropped; {counts['conflicts']} conflicts). "
        f"{sum(per_stage.values())} files in {out}/ in {result.timings.get('total', 0):.2f} s."
    )


def _build_request(args: argparse.Namespace) -> tuple[list[str], dict[str, object]] | int:
    """(formats, options) from build's and watch's arguments, or the usage error's exit status."""
    names = _format_list(args.formats) or available()
    unknown = [n for n in names if n not in FORMATS]
    if unknown:
        print(f"carepress: error: unknown format {unknown[0]!r} (choose from {', '.join(FORMATS)})", file=sys.stderr)
        return EXIT_USAGE
    missing = [n for n in names if n not in available()]
    if missing:
        print(f"carepress: error: format {missing[0]!r} is not available in this version", file=sys.stderr)
        return EXIT_USAGE
    if args.jobs < 1:
        print("carepress: error: --jobs must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    return names, {k: v for k, v in {"paper": args.paper, "profile": args.profile}.items() if v}


def cmd_build(args: argparse.Namespace) -> int:
    # The build pauses the cyclic garbage collector (collector.paused). The command is the
    # process's last act (run ends it at once), so the collector stays off: turned on after the
    # build, its first pass would walk all the build made (40 to 90 ms) on the way out.
    gc.disable()
    request = _build_request(args)
    if isinstance(request, int):
        return request
    names, options = request
    try:
        inputs = resolve_inputs(args.source, args.config)
    except CarepressError as exc:
        _print_diagnostics(exc.diagnostics)
        return EXIT_FAILED
    execution = {"jobs": args.jobs}  # how, not what: not part of the cache key
    out = Path(args.out)
    if args.quiet or not sys.stderr.isatty():
        result = build(inputs, names, out, args.strict, options, use_cache=not args.force, execution=execution)
    else:
        from rich.console import Console

        with Console(stderr=True).status("building") as status:
            result = build(inputs, names, out, args.strict, options, progress=lambda m: status.update(m),
                           use_cache=not args.force, execution=execution)
    _print_diagnostics(result.diagnostics)
    if result.status != EXIT_OK:
        print("carepress: build failed; outputs/ left as it was", file=sys.stderr)
        return result.status
    if result.cached:
        if not args.quiet:
            print(f"{out}/ is up to date (nothing changed; use --force to render again)")
        return EXIT_OK
    if not args.quiet:
        _summary(result, out)
    return EXIT_OK


def cmd_watch(args: argparse.Namespace) -> int:
    from .watch import Watch, run

    request = _build_request(args)
    if isinstance(request, int):
        return request
    if not 0 < args.interval <= 60:
        print("carepress: error: --interval must be more than 0 and at most 60 seconds", file=sys.stderr)
        return EXIT_USAGE
    names, options = request
    watch = Watch(lambda: resolve_inputs(args.source, args.config), names, Path(args.out), args.strict, options,
                  args.jobs, args.interval)
    return run(watch, lambda line: print(line, flush=True), _print_diagnostics)


def cmd_validate(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from .config import load_config
    from .model import Collection

    diagnostics: list[Diagnostic] = []
    json_paths = [p for p in args.paths if p.endswith(".json")]
    toml_paths = [p for p in args.paths if p.endswith(".toml")]
    source_paths = [p for p in args.paths if p not in json_paths and p not in toml_paths]
    for path in json_paths:
        try:
            Collection.model_validate_json(Path(path).read_bytes())
        except (OSError, ValidationError) as exc:
            from .diagnostics import error

            msg = exc.strerror if isinstance(exc, OSError) else "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:20])
            diagnostics.append(error("CP111", f"not a valid collection: {msg}", path))
    for path in toml_paths:
        try:
            load_config(Path(path))
        except CarepressError as exc:
            diagnostics.extend(exc.diagnostics)
    if source_paths or not args.paths:
        try:
            inputs = resolve_inputs(source_paths or None, args.config or (toml_paths[0] if toml_paths else None))
            _config, loaded = load_inputs(inputs)
            diagnostics.extend(loaded.diagnostics)
            counts = loaded.report.counts()
            print(f"{', '.join(map(str, inputs.sources))}: {counts['segments']} segments -> {counts['topics']} topics")
        except CarepressError as exc:
            diagnostics.extend(exc.diagnostics)
    _print_diagnostics(diagnostics)
    if fails(diagnostics, args.strict):
        return EXIT_FAILED
    print("valid")
    return EXIT_OK


def cmd_dedupe(args: argparse.Namespace) -> int:
    try:
        _config, loaded = load_inputs(resolve_inputs(args.source, args.config))
    except CarepressError as exc:
        _print_diagnostics(exc.diagnostics)
        return EXIT_FAILED
    report = loaded.report
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
        return EXIT_OK
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    topics = Table(title="Topics", header_style="bold")
    for col in ("#", "slug", "title", "aliases", "sources"):
        topics.add_column(col)
    for n, topic in enumerate(loaded.collection.topics, 1):
        topics.add_row(str(n), topic.slug, topic.title, "; ".join(topic.aliases),
                       ", ".join(str(s) for s in topic.sources))
    console.print(topics)
    merges = Table(title="Merges", header_style="bold")
    for col in ("segment", "source", "kind", "into", "score", "reason"):
        merges.add_column(col)
    for m in report.merges:
        merges.add_row(str(m.segment), str(m.span), m.kind, m.topic, f"{m.score:.2f}", m.reason)
    console.print(merges)
    for d in report.drops:
        console.print(f"dropped segment {d.segment} ({d.span}): {d.reason} [{d.code}]")
    counts = report.counts()
    console.print(
        f"{counts['segments']} segments -> {counts['topics']} topics: {counts['exact']} exact, "
        f"{counts['title_variant']} title-variant, {counts['near_duplicate']} near-duplicate merges, "
        f"{counts['dropped']} dropped, {counts['conflicts']} conflicts"
    )
    _print_diagnostics(loaded.diagnostics)
    return EXIT_OK


def schema_text() -> str:
    from .model import collection_json_schema

    return json.dumps(collection_json_schema(), indent=2, sort_keys=True) + "\n"


def cmd_schema(args: argparse.Namespace) -> int:
    path = Path(args.out)
    text = schema_text()
    if args.check:
        current = path.read_text(encoding="utf-8") if path.is_file() else ""
        if current != text:
            print(f"{path}: schema is out of date; run 'carepress schema'", file=sys.stderr)
            return EXIT_FAILED
        print(f"{path}: up to date")
        return EXIT_OK
    from .writer import publish

    publish({path.name: text.encode("utf-8")}, path.parent)
    print(f"wrote {path}")
    return EXIT_OK


def cmd_captions(args: argparse.Namespace) -> int:
    if args.captions_command != "lint":
        print("carepress captions: choose a subcommand: lint", file=sys.stderr)
        return EXIT_USAGE
    from .captions.lint import lint_command

    return lint_command(args.files, args.profile)


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import bench_command

    return bench_command(args)


COMMANDS = {
    "build": cmd_build,
    "watch": cmd_watch,
    "validate": cmd_validate,
    "dedupe": cmd_dedupe,
    "schema": cmd_schema,
    "captions": cmd_captions,
    "bench": cmd_bench,
}


def _cores() -> int:
    """Cores this process may run on (a container's CPU set, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help / usage errors
        return int(exc.code or 0)
    if not args.command:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return COMMANDS[args.command](args)
    except CarepressError as exc:
        _print_diagnostics(exc.diagnostics)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("carepress: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK


def run() -> None:
    """The ``carepress`` command: :func:`main`, then a quick exit.

    Everything is written and every worker process has ended when ``main`` returns; tearing
    down the interpreter (freeing a thousand-topic build object by object) would add a tenth
    of a second to every build, so the output streams are flushed and the process ends.
    """
    status = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)
