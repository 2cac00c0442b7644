"""Benchmarks (`make bench`, `carepress bench`): speed goals live here, never in timed tests.

Each benchmark is ``"module:function"`` taking the parsed CLI args and returning a dict of
figures; it prints its own human-readable lines. Results go to outputs/bench/bench.json.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

from .writer import publish

BENCHMARKS: dict[str, str] = {
    "dedupe": "pipeline.bench_dedupe:run",
    "pdf": "pipeline.bench_pdf:run",
    "build": "pipeline.bench_build:run",
}


def bench_command(args) -> int:
    results: dict[str, dict] = {}
    names = args.only or list(BENCHMARKS)
    for name in names:
        if name not in BENCHMARKS:
            print(f"carepress bench: unknown benchmark {name!r} (choose from {', '.join(BENCHMARKS)})", file=sys.stderr)
            return 2
        module, func = BENCHMARKS[name].split(":")
        try:
            runner = getattr(importlib.import_module(module), func)
        except ModuleNotFoundError:
            print(f"bench {name}: not available in this version", file=sys.stderr)
            continue
        print(f"== bench: {name}")
        results[name] = runner(args)
    publish({"bench/bench.json": (json.dumps(results, indent=2) + "\n").encode()}, Path("outputs"))
    print("wrote outputs/bench/bench.json")
    return 0
