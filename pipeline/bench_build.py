"""Whole-pipeline benchmark: a labelled synthetic collection through every format.

Writes the corpus as a raw text source (with exact, re-titled and near-duplicate repeats),
runs ``carepress build`` on it in a child process (fresh interpreter, its own peak memory),
then rebuilds (nothing changed, one topic edited, pages moved, ``carepress watch``). Then it
times the naive route (pandoc and weasyprint command lines once per topic, on every topic or
a sample) and builds every format from scratch once more, so the ratio between the two
routes divides by builds timed before and after the naive one. Prints a table and writes
outputs/bench/build.svg.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from .synth import corpus, pair_scores
from .writer import publish

CHILD = """
import json, os, resource, sys, time
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
                               + resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024}), flush=True)
os._exit(0)  # as the carepress command ends (pipeline.cli.run)
"""
FORMATS = "content,captions,pdf,epub,html"


def labelled(topics: int):
    """The labelled corpus with exactly ``topics`` true topics: the fewest segments that hold them
    (the generator's stream does not depend on its length, so topics grow one segment at a time)."""
    def make(segments: int):
        return corpus(segments=segments, seed=11, exact=0.30, retitled=0.10, near=0.05, conflicts=0.01)

    low, high = topics, 4 * topics + 8  # new topics are about half of the segments
    while low < high:
        middle = (low + high) // 2
        if make(middle).topics < topics:
            low = middle + 1
        else:
            high = middle
    return make(low)


def write_source(path: Path, topics: int) -> list[int]:
    """A raw text source with exactly ``topics`` unique topics; returns the true label of each segment."""
    data = labelled(topics)
    with path.open("w", encoding="utf-8") as out:
        out.write("Synthetic Patient Education\n\nA generated collection for benchmarking carepress.\n\n")
        for seg in data.segments:
            out.write(f"{seg.title}\n\n{seg.blocks[0].text}\n\n")
    return data.labels


def _child(source: Path, out: Path, formats: str, jobs: int) -> dict:
    """One build in a fresh interpreter, as ``carepress build`` runs it; its memory is sampled."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(source), str(out), formats, str(jobs)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = _MemorySampler(proc.pid)
    sampler.start()
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - start
    sampler.stop()
    if proc.returncode != 0:
        raise RuntimeError(stderr[-2000:])
    figures = json.loads(stdout.strip().splitlines()[-1])
    figures["process_wall"] = wall
    figures["peak_pss_mib"] = sampler.peak / 1024
    return figures


class _MemorySampler(threading.Thread):
    """The largest sum, sampled every second, of the proportional set size (PSS: a page shared
    by n processes counts 1/n in each) of a process and all its descendants: the memory the
    build really holds, its forked workers and the booklet's assembler included. A sample
    walks the page tables of every process (about 10 ms for a thousand-topic build): sampled
    more often, it takes enough of a core to slow the build it measures."""

    INTERVAL = 1.0

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self._done = pid, 0, threading.Event()

    def run(self) -> None:
        while not self._done.wait(self.INTERVAL):
            self.peak = max(self.peak, sum(_pss_kib(pid) for pid in _tree(self.pid)))

    def stop(self) -> None:
        self._done.set()
        self.join()


def _tree(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as handle:
                    fields = handle.read().rsplit(b")", 1)[1].split()
                parents[int(entry.name)] = int(fields[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, parent in parents.items() if parent in frontier]
        found += frontier
    return found


def _pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as handle:
            for line in handle:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _command(source: Path, out: Path, jobs: int) -> float:
    """Wall seconds of the real ``carepress build`` command (a fresh process, as a user runs it)."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pipeline", "build", "--source", str(source), "--out", str(out),
                           "--quiet", "--jobs", str(jobs)], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return wall


def _watched(source: Path, out: Path, jobs: int, edits: int = 3) -> tuple[list[float], list[float]]:
    """``carepress watch`` on the built outputs: for each of ``edits`` one-topic edits, the wall
    seconds from the edit saved to its outputs published (the watch's line), and the build's own
    seconds as the watch reports them. Polls every 0.05 s, so up to that much is waiting."""
    import re
    import signal

    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "watch", "--source", str(source), "--out", str(out),
                             "--jobs", str(jobs), "--interval", "0.05"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    guard = threading.Timer(600, proc.kill)  # a watch that never answers ends the bench, not hangs it
    guard.start()
    walls, builds = [], []
    try:
        while "watching" not in (line := proc.stdout.readline()):
            if not line:
                raise RuntimeError("carepress watch ended before watching")
        time.sleep(3)  # its workers warm up (WeasyPrint imported, fonts parsed) once, as they do for an editor
        for _ in range(edits):
            start = time.perf_counter()
            _toggle_edit(source)
            line = proc.stdout.readline()
            walls.append(time.perf_counter() - start)
            found = re.search(r"built .* in ([0-9.]+) s", line)
            if not found:
                raise RuntimeError(f"carepress watch: {line.strip() or 'ended'}")
            builds.append(float(found.group(1)))
            time.sleep(1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        guard.cancel()
    return walls, builds


def _toggle_edit(source: Path, words: str = " Edited.") -> None:
    """Edit the first topic's text: add ``words`` (a word by default), or take them away again.
    Saved as many editors save, by renaming a new file over the old: never seen half written."""
    text = source.read_text(encoding="utf-8")
    if words in text:
        text = text.replace(words, "", 1)
    else:
        marker = text.index("\n\n", text.index("\n\n", 80) + 2)  # inside the first topic's body
        text = text[:marker] + words + text[marker:]
    new = source.with_name(source.name + ".new")
    new.write_text(text, encoding="utf-8")
    os.replace(new, source)


# More than a page of the booklet's text: added to the first topic, it moves the topics after it
# in its booklet part, and every later part, to other pages, whatever room the part's last page had.
MORE = (" A paragraph more: what to ask at the next visit, what to write down between visits, and whom"
        " to call if the symptoms change quickly or the treatment stops helping.") * 20


def _contents_number(out: Path) -> int:
    """The last page number the booklet's contents show: where the last topic starts."""
    import io

    import pikepdf

    booklet = next((out / "pdf").glob("*-booklet.pdf"))
    with pikepdf.open(io.BytesIO(booklet.read_bytes())) as pdf:
        index = {page.objgen: i for i, page in enumerate(pdf.pages)}
        targets = [index[annot.Dest[0].objgen] for page in pdf.pages for annot in page.get("/Annots", ())
                   if "/Dest" in annot]
    return max(targets) + 1


def _naive(content: Path, work: Path, sample: int) -> tuple[float, float, int]:
    """Seconds per topic for the pandoc command line (Markdown -> HTML) plus the weasyprint
    command line (HTML -> PDF), run once per topic of the built collection (``content``: its
    content.json), or on ``sample`` of them spread evenly (0: every topic): (mean, standard
    error of the mean, topics timed)."""
    import statistics

    import pypandoc

    pandoc = pypandoc.get_pandoc_path()
    weasy = shutil.which("weasyprint", path=str(Path(sys.executable).parent)) or "weasyprint"
    model = json.loads(content.read_text(encoding="utf-8"))
    topics = [(t["title"], "\n\n".join(b["text"] if b["type"] == "paragraph" else "\n".join(f"- {i}" for i in b["items"])
                                       for b in t["body"])) for t in model["topics"]]
    step = 1 if sample <= 0 or sample >= len(topics) else len(topics) / sample
    chosen = [topics[int(k * step)] for k in range(len(topics) if step == 1 else sample)]
    seconds = []
    for n, (title, body) in enumerate(chosen):
        md = work / f"t{n}.md"
        md.write_text(f"# {title}\n\n{body}\n", encoding="utf-8")
        html = md.with_suffix(".html")
        start = time.perf_counter()
        subprocess.run([pandoc, "--sandbox", "-s", "--metadata", "title=t", str(md), "-o", str(html)], check=True,
                       capture_output=True)
        subprocess.run([weasy, str(html), str(html.with_suffix(".pdf"))], check=True, capture_output=True)
        seconds.append(time.perf_counter() - start)
    error = statistics.stdev(seconds) / len(seconds) ** 0.5 if len(seconds) > 1 else 0.0
    return statistics.mean(seconds), error, len(seconds)


def _svg(panels: list[tuple[str, dict[str, float]]], title: str) -> str:
    """Horizontal bar charts, one panel each (seconds), for a person to look at."""
    width, bar_h, left = 840, 24, 340
    rows, y = [], 44
    for heading, bars in panels:
        rows.append(f'<text x="10" y="{y + 4}" font-weight="bold">{heading}</text>')
        y += 14
        scale = (width - left - 90) / max(max(bars.values()), 1e-9)
        for name, seconds in bars.items():
            rows.append(f'<text x="{left - 8}" y="{y + 17}" text-anchor="end">{name}</text>'
                        f'<rect x="{left}" y="{y}" width="{max(seconds * scale, 1):.1f}" height="{bar_h}" '
                        f'fill="#0b3d5c"/><text x="{left + max(seconds * scale, 1) + 6:.1f}" y="{y + 17}">'
                        f'{seconds:.2f} s</text>')
            y += bar_h + 6
        y += 22
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{y}" '
            f'font-family="sans-serif" font-size="14" role="img" aria-label="{title}">'
            f'<title>{title}</title><rect width="100%" height="100%" fill="#fff"/>'
            f'<text x="10" y="22" font-size="16" font-weight="bold">{title}</text>{"".join(rows)}</svg>\n')


def run(args) -> dict:
    import statistics

    topics = getattr(args, "topics", 1000)
    jobs = getattr(args, "jobs", None) or len(os.sched_getaffinity(0))
    sample = getattr(args, "naive_sample", 0)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        source = work / "synthetic.txt"
        labels = write_source(source, topics)
        original = source.read_bytes()
        out = work / "outputs"
        first = _child(source, out, FORMATS, jobs)
        if first["status"] != 0:
            raise RuntimeError(f"build failed: {first['diagnostics']}")
        unchanged = [_command(source, out, jobs) for _ in range(3)]
        one_changed = []
        for _ in range(3):  # a word added to the first topic, taken away, added again
            _toggle_edit(source)
            one_changed.append(_command(source, out, jobs))
        moved, last_numbers = [], [_contents_number(out)]
        for _ in range(3):  # a paragraph added to the first topic, taken away, added again
            _toggle_edit(source, MORE)
            moved.append(_command(source, out, jobs))
            last_numbers.append(_contents_number(out))
        watch_walls, watch_builds = _watched(source, out, jobs)
        naive_per_topic, naive_error, naive_timed = _naive(out / "content.json", work, sample)
        # The same build from scratch again, after the naive route: the ratio divides by both
        # builds, so a host that got faster or slower while the naive route ran (it takes 15 to
        # 25 minutes) moves both sides of it, not one.
        source.write_bytes(original)
        again = _child(source, work / "again", FORMATS, jobs)
        if again["status"] != 0:
            raise RuntimeError(f"build failed: {again['diagnostics']}")
    precision, recall = pair_scores([p or "dropped" for p in first["predicted"]], labels)
    unique = len(set(p for p in first["predicted"] if p))
    stages = {k: round(v, 2) for k, v in first["timings"].items() if k != "total"}
    naive_total = naive_per_topic * unique
    builds = [first["process_wall"], again["process_wall"]]
    figures = {
        "topics": unique, "segments": len(labels), "jobs": jobs,
        "stages_seconds": stages,
        "build_wall_seconds": round(first["process_wall"], 2),
        # the same build again, after the naive route (see speedup_vs_naive)
        "build_again_wall_seconds": round(again["process_wall"], 2),
        "unchanged_rebuild_wall_seconds": round(statistics.median(unchanged), 3),
        "unchanged_rebuild_runs": [round(t, 3) for t in unchanged],
        "one_topic_changed_wall_seconds": round(statistics.median(one_changed), 2),
        "one_topic_changed_runs": [round(t, 2) for t in one_changed],
        "one_topic_moved_pages_wall_seconds": round(statistics.median(moved), 2),
        "one_topic_moved_pages_runs": [round(t, 2) for t in moved],
        # where the contents say the last topic starts, before the first paragraph edit and after each
        "last_topic_page": last_numbers,
        "watch_one_topic_changed_wall_seconds": round(statistics.median(watch_walls), 2),
        "watch_one_topic_changed_runs": [round(t, 2) for t in watch_walls],
        "watch_build_seconds": [round(t, 2) for t in watch_builds],
        "peak_memory_mib": round(first["peak_pss_mib"]),
        "peak_rss_parent_plus_largest_child_mib": round(first["peak_mib"]),
        "handouts_per_second": round(2 * unique / max(stages.get("pdf", 0), 1e-9), 1),
        "dedupe_precision": round(precision, 5), "dedupe_recall": round(recall, 5),
        "naive_topics_timed": naive_timed,
        "naive_seconds_per_topic": round(naive_per_topic, 3),
        "naive_standard_error": round(naive_error, 4),
        "naive_seconds_for_all_topics": round(naive_total, 1),
        # the naive route against the mean of the builds timed before and after it
        "speedup_vs_naive": round(naive_total / statistics.mean(builds), 1),
        "speedup_vs_naive_each_build": [round(naive_total / wall, 1) for wall in builds],
    }
    print(f"build: {len(labels):,} segments -> {unique:,} topics, every format, --jobs {jobs}")
    for name, seconds in stages.items():
        print(f"  {name:<10} {seconds:8.2f} s")
    print(f"  wall {figures['build_wall_seconds']} s, peak {figures['peak_memory_mib']} MiB (PSS of all processes), "
          f"{figures['handouts_per_second']} handouts/s; dedupe precision {precision:.4f} recall {recall:.4f}")
    print(f"  carepress build, nothing changed: {figures['unchanged_rebuild_wall_seconds']} s "
          f"(runs {', '.join(f'{t:.2f}' for t in unchanged)}); one topic changed: "
          f"{figures['one_topic_changed_wall_seconds']} s (runs {', '.join(f'{t:.2f}' for t in one_changed)})")
    print(f"  carepress build, a page of text added to one topic (later topics move pages: the last starts on page "
          f"{', '.join(map(str, last_numbers))}): {figures['one_topic_moved_pages_wall_seconds']} s "
          f"(runs {', '.join(f'{t:.2f}' for t in moved)})")
    print(f"  carepress watch, one topic changed (edit saved -> outputs published): "
          f"{figures['watch_one_topic_changed_wall_seconds']} s (runs {', '.join(f'{t:.2f}' for t in watch_walls)}; "
          f"the builds themselves {', '.join(f'{t:.2f}' for t in watch_builds)} s)")
    what = "every topic" if naive_timed >= unique else f"{naive_timed} topics spread over the {unique}"
    print(f"  naive route (pandoc + weasyprint command lines per topic, timed on {what}): "
          f"{naive_per_topic:.3f} s/topic (± {naive_error:.3f}) -> {naive_total:.0f} s for {unique} topics")
    print(f"  every format again after the naive route: {figures['build_again_wall_seconds']} s; ours is "
          f"{figures['speedup_vs_naive']}x faster than the naive route, against the mean of the two builds "
          f"({' and '.join(f'{r}x' for r in figures['speedup_vs_naive_each_build'])} against each)")
    svg = _svg([(f"every format from scratch: {figures['build_wall_seconds']} s wall, seconds per stage", stages),
                ("against the naive route and rebuilds (seconds)",
                 {"naive route, handouts only": round(naive_total, 2),
                  "carepress, every format (target 30)": figures["build_wall_seconds"],
                  "the same, after the naive route": figures["build_again_wall_seconds"],
                  "one topic changed (target 2)": figures["one_topic_changed_wall_seconds"],
                  "a page more in one topic: pages move (target 2)": figures["one_topic_moved_pages_wall_seconds"],
                  "one topic changed, carepress watch (target 2)": figures["watch_one_topic_changed_wall_seconds"],
                  "nothing changed (target 0.6)": figures["unchanged_rebuild_wall_seconds"]})],
               f"carepress build, {unique} topics, {jobs} processes")
    out_dir = Path(getattr(args, "out", None) or "outputs")
    publish({"bench/build.svg": svg.encode()}, out_dir)
    print(f"  chart: {out_dir}/bench/build.svg")
    return figures
