"""``carepress watch``: builds, then builds again after each change, as a fresh build would."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import ROOT, SEED, SEED_CONFIG, modules_imported, run_cli

from pipeline.build import Inputs
from pipeline.watch import snapshot


class _Lines:
    """A process's stdout, a line at a time, with a deadline (a watch that hangs fails the test)."""

    def __init__(self, proc: subprocess.Popen):
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()

    def _read(self, proc) -> None:
        for line in proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put("")

    def next(self, timeout: float = 180) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"no line from carepress watch in {timeout} s")


def _published(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.relative_to(folder).as_posix().startswith(".")}


def _children(pid: int) -> set[int]:
    """The live child processes of ``pid`` (not one that has ended and is not yet reaped: a
    booklet's assembling child is reaped by the next process the build starts, or between builds)."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            state, parent = stat.rsplit(")", 1)[1].split()[:2]
            if int(parent) == pid and state != "Z":
                found.add(int(entry))
    return found


def test_watch_rebuilds_each_change_as_a_clean_build_would(tmp_path):
    source, config = tmp_path / SEED.name, tmp_path / SEED_CONFIG.name
    source.write_bytes(SEED.read_bytes())
    config.write_bytes(SEED_CONFIG.read_bytes())
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "watch", "--source", str(source), "--config",
                             str(config), "--out", str(out), "--jobs", "2", "--interval", "0.05"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = _Lines(proc)
    try:
        assert "built" in lines.next() and "watching" in lines.next()
        workers = _children(proc.pid)
        assert len(workers) == 2  # kept warm between builds

        source.write_bytes(SEED.read_bytes().replace(b"involuntary eye closure", b"involuntary closing of the eyes"))
        assert "built" in lines.next()
        assert _children(proc.pid) >= workers  # the same workers: WeasyPrint is not loaded again
        clean = tmp_path / "clean"
        assert run_cli("build", "--quiet", "--out", str(clean), "--source", str(source), "--config",
                       str(config)).returncode == 0
        assert _published(out) == _published(clean)

        before = _published(out)
        config.write_text("title = [not valid\n")
        assert "build failed" in lines.next() and _published(out) == before  # outputs left as they were
        config.write_bytes(SEED_CONFIG.read_bytes())
        assert "up to date" in lines.next()

        proc.send_signal(signal.SIGINT)
        assert lines.next() == "stopped watching"
        assert proc.wait(60) == 0
        stderr = proc.stderr.read()
        assert "Traceback" not in stderr and "CP1" in stderr  # the config error, reported once
        deadline = time.monotonic() + 30
        while any(Path(f"/proc/{pid}").exists() for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(Path(f"/proc/{pid}").exists() for pid in workers)  # no worker left behind
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_watch_stops_on_sigterm_and_reports_sources_it_cannot_find(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "watch", "--source", str(tmp_path / "missing.txt"),
                             "--out", str(tmp_path / "out"), "--jobs", "1", "--interval", "0.05"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = _Lines(proc)
    try:
        assert "build failed" in lines.next() and "watching" in lines.next()
        (tmp_path / "missing.txt").write_bytes(SEED.read_bytes())
        assert "built" in lines.next()
        proc.send_signal(signal.SIGTERM)
        assert lines.next() == "stopped watching" and proc.wait(60) == 0
        assert "CP100" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_snapshot_sees_edits_new_files_and_missing_ones(tmp_path):
    source, transcripts = tmp_path / "a.txt", tmp_path / "transcripts"
    source.write_text("one")
    transcripts.mkdir()
    inputs = Inputs([source], tmp_path / "collection.toml", transcripts)
    first = snapshot(inputs)
    assert dict(first)[str(tmp_path / "collection.toml")] is None  # missing: the build reports it
    assert snapshot(inputs) == first
    (transcripts / "topic.txt").write_text("words")
    second = snapshot(inputs)
    assert second != first and str(transcripts / "topic.txt") in dict(second)
    source.write_text("two!")  # another size (an edit within the clock's resolution still shows)
    assert snapshot(inputs) != second


@contextmanager
def _seed_watch_with_two_workers(tmp_path):
    """``carepress watch`` of the seed with --jobs 2, built and watching: (process, its lines,
    its two workers' pids). Killed at the end if still running."""
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "watch", "--source", str(SEED), "--config",
                             str(SEED_CONFIG), "--out", str(tmp_path / "out"), "--jobs", "2", "--interval", "0.05"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = _Lines(proc)
    try:
        assert "built" in lines.next() and "watching" in lines.next()
        workers = _children(proc.pid)
        assert len(workers) == 2
        yield proc, lines, workers
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_workers_end_with_a_killed_watch(tmp_path):
    """``kill -9`` leaves no worker behind, waiting for work forever: the kernel ends them too."""
    with _seed_watch_with_two_workers(tmp_path) as (proc, _lines, workers):
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 30
        while any(Path(f"/proc/{pid}").exists() for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(Path(f"/proc/{pid}").exists() for pid in workers)


def test_sigterm_to_the_watch_and_its_workers_at_once_is_quiet(tmp_path):
    """``pkill -f "carepress watch"`` (or a service manager) sends SIGTERM to the workers too:
    they end without a traceback each, and the watch stops as it does on its own SIGTERM."""
    with _seed_watch_with_two_workers(tmp_path) as (proc, lines, workers):
        for pid in workers:
            os.kill(pid, signal.SIGTERM)
        proc.send_signal(signal.SIGTERM)
        assert lines.next() == "stopped watching" and proc.wait(60) == 0
        assert "Traceback" not in proc.stderr.read()


def test_between_builds_the_watch_imports_what_a_build_needs():
    """An up-to-date build imports neither pydantic nor the formats: the watch imports them while
    it waits, so the first edit does not pay for them."""
    wanted = ("pydantic", "pipeline.content", "pipeline.formats.pdf", "pipeline.formats.epub", "pipeline.formats.html",
              "pipeline.formats.captions")
    probe = ("import sys\nfrom pipeline.formats import resolve\nfrom pipeline.watch import _between_builds\n"
             "assert 'pydantic' not in sys.modules and 'pipeline.formats.pdf' not in sys.modules\n"
             "_between_builds(resolve(['content', 'epub', 'captions', 'pdf', 'html']))")
    assert modules_imported(probe, wanted) == sorted(wanted)


class _InterruptsWhenFreed:
    """Sends this process SIGINT from its finalizer, as Ctrl-C can land while what a build made
    is freed: Python then drops the KeyboardInterrupt raised there ("Exception ignored")."""

    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):  # bytecodes for the handler to run in
            pass


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the dropped interrupt
@pytest.mark.parametrize("where", ["after a build", "between builds"])
def test_ctrl_c_while_a_finalizer_runs_still_stops_the_watch(where, tmp_path, monkeypatch):
    """Ctrl-C that arrives while a finalizer runs stops the watch at its next poll (before, the
    interrupt was lost and the watch went on: a test waited three minutes for "stopped
    watching"); between builds, where most is freed, the handler only records it. The handlers
    the watch replaced are back afterwards."""
    import gc

    from pipeline import watch

    source = tmp_path / "source.txt"
    source.write_bytes(SEED.read_bytes())
    polls = []

    def poll(inputs):
        polls.append(1)
        assert len(polls) < 100, "still watching after Ctrl-C"
        return snapshot(inputs)

    def interrupted_while_freeing(real):
        def call(*args):
            result = real(*args)
            orphan = _InterruptsWhenFreed()
            orphan.cycle = orphan  # freed by the collector, as a build's garbage is
            del orphan
            gc.collect()
            return result
        return call

    monkeypatch.setattr(watch, "snapshot", poll)
    name = "_build_once" if where == "after a build" else "_between_builds"
    monkeypatch.setattr(watch, name, interrupted_while_freeing(getattr(watch, name)))
    said: list[str] = []
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    status = watch.run(watch.Watch(lambda: Inputs([source], None, None), ["content"], tmp_path / "out",
                                   interval=0.01), said.append, lambda diagnostics: None)
    assert status == 0 and said[-1] == "stopped watching" and any("built" in line for line in said)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
