"""Whole-pipeline benchmark: a labelled synthetic collection through every format.

Writes the corpus as a raw text source (with exact, re-titled and near-duplicate repeats),
runs ``carepress build`` on it in a child process (fresh interpreter, its own peak memory),
then an unchanged rebuild, then a rebuild with one topic edited. Also times the naive
route (pandoc and weasyprint command lines once per topic) on a sample and extrapolates.
Prints a table and writes outputs/bench/build.svg.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .synth import corpus, pair_scores
from .writer import publish

CHILD = """
import json, resource, sys, time
from pathlib import Path
from pipeline.build import Inputs, build
t0 = time.perf_counter()
result = build(Inputs([Path(sys.argv[1])], None, None), sys.argv[3].split(","), Path(sys.argv[2]),
               execution={"jobs": int(sys.argv[4])})
wall = time.perf_counter() - t0
rows = result.loaded.report.rows if result.loaded else []
print(json.dumps({"status": result.status, "timings": result.timings, "cached": result.cached, "wall": wall,
                  "files": len(result.files), "predicted": [r[4] for r in rows],
                  "diagnostics": [str(d) for d in result.diagnostics if d.severity.value == "error"][:5],
                  "peak_mib": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                               + resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024}))
"""
FORMATS = "content,captions,pdf,epub,html"


def write_source(path: Path, topics: int) -> list[int]:
    """A raw text source with about ``topics`` unique topics; returns the true label of each segment."""
    data = corpus(segments=int(topics / 0.55) + 1, seed=11, exact=0.30, retitled=0.10, near=0.05, conflicts=0.01)
    with path.open("w", encoding="utf-8") as out:
        out.write("Synthetic Patient Education\n\nA generated collection for benchmarking carepress.\n\n")
        for seg in data.segments:
            out.write(f"{seg.title}\n\n{seg.blocks[0].text}\n\n")
    return data.labels


def _child(source: Path, out: Path, formats: str, jobs: int) -> dict:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, str(source), str(out), formats, str(jobs)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    figures["process_wall"] = time.perf_counter() - start
    return figures


def _naive(source: Path, work: Path, sample: int) -> float:
    """Seconds per topic for pandoc CLI (text -> HTML) plus weasyprint CLI (HTML -> PDF)."""
    import pypandoc

    pandoc = pypandoc.get_pandoc_path()
    weasy = shutil.which("weasyprint", path=str(Path(sys.executable).parent)) or "weasyprint"
    text = source.read_text(encoding="utf-8").split("\n\n")
    start = time.perf_counter()
    for n in range(sample):
        md = work / f"t{n}.md"
        md.write_text(f"# {text[2 + 2 * n]}\n\n{text[3 + 2 * n]}\n", encoding="utf-8")
        html = md.with_suffix(".html")
        subprocess.run([pandoc, "--sandbox", "-s", "--metadata", "title=t", str(md), "-o", str(html)], check=True,
                       capture_output=True)
        subprocess.run([weasy, str(html), str(html.with_suffix(".pdf"))], check=True, capture_output=True)
    return (time.perf_counter() - start) / sample


def _svg(stages: dict[str, float], title: str) -> str:
    width, bar_h, left = 640, 26, 150
    scale = (width - left - 80) / max(max(stages.values()), 1e-9)
    rows = []
    for i, (name, seconds) in enumerate(stages.items()):
        y = 40 + i * (bar_h + 8)
        rows.append(f'<text x="{left - 8}" y="{y + 18}" text-anchor="end">{name}</text>'
                    f'<rect x="{left}" y="{y}" width="{max(seconds * scale, 1):.1f}" height="{bar_h}" fill="#0b3d5c"/>'
                    f'<text x="{left + seconds * scale + 6:.1f}" y="{y + 18}">{seconds:.2f} s</text>')
    height = 60 + len(stages) * (bar_h + 8)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'font-family="sans-serif" font-size="14" role="img" aria-label="{title}">'
            f'<title>{title}</title><rect width="100%" height="100%" fill="#fff"/>'
            f'<text x="10" y="22" font-weight="bold">{title}</text>{"".join(rows)}</svg>\n')


def run(args) -> dict:
    topics = getattr(args, "topics", 1000)
    jobs = getattr(args, "jobs", None) or (len(__import__("os").sched_getaffinity(0)))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        source = work / "synthetic.txt"
        labels = write_source(source, topics)
        out = work / "outputs"
        first = _child(source, out, FORMATS, jobs)
        if first["status"] != 0:
            raise RuntimeError(f"build failed: {first['diagnostics']}")
        unchanged = _child(source, out, FORMATS, jobs)
        text = source.read_text(encoding="utf-8")
        marker = text.index("\n\n", text.index("\n\n", 80) + 2)  # inside the first topic's body
        source.write_text(text[:marker] + " Edited." + text[marker:], encoding="utf-8")
        one_changed = _child(source, out, FORMATS, jobs)
        naive_per_topic = _naive(source, work, sample=6)
    precision, recall = pair_scores([p or "dropped" for p in first["predicted"]], labels)
    unique = len(set(p for p in first["predicted"] if p))
    stages = {k: round(v, 2) for k, v in first["timings"].items() if k != "total"}
    naive_total = naive_per_topic * unique
    figures = {
        "topics": unique, "segments": len(labels), "jobs": jobs,
        "stages_seconds": stages,
        "build_wall_seconds": round(first["process_wall"], 2),
        "unchanged_rebuild_wall_seconds": round(unchanged["process_wall"], 2),
        "one_topic_changed_wall_seconds": round(one_changed["process_wall"], 2),
        "peak_memory_mib": round(first["peak_mib"]),
        "handouts_per_second": round(2 * unique / max(stages.get("pdf", 0), 1e-9), 1),
        "dedupe_precision": round(precision, 5), "dedupe_recall": round(recall, 5),
        "naive_seconds_per_topic": round(naive_per_topic, 3),
        "naive_extrapolated_seconds": round(naive_total, 1),
        "speedup_vs_naive": round(naive_total / first["process_wall"], 1),
    }
    print(f"build: {len(labels):,} segments -> {unique:,} topics, every format, --jobs {jobs}")
    for name, seconds in stages.items():
        print(f"  {name:<10} {seconds:8.2f} s")
    print(f"  wall {figures['build_wall_seconds']} s, peak {figures['peak_memory_mib']} MiB, "
          f"{figures['handouts_per_second']} handouts/s; dedupe precision {precision:.4f} recall {recall:.4f}")
    print(f"  unchanged rebuild {figures['unchanged_rebuild_wall_seconds']} s; one topic changed "
          f"{figures['one_topic_changed_wall_seconds']} s")
    print(f"  naive route (pandoc + weasyprint CLI per topic): {naive_per_topic:.2f} s/topic -> "
          f"~{naive_total:.0f} s for {unique} topics; ours is {figures['speedup_vs_naive']}x faster")
    svg = _svg(stages, f"carepress build, {unique} topics: seconds per stage")
    publish({"bench/build.svg": svg.encode()}, Path("outputs"))
    print("  chart: outputs/bench/build.svg")
    return figures
