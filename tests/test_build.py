"""The build's stages: the order they start and render in, and the order their diagnostics keep."""

from __future__ import annotations

import os
import sys
import time
import types
from typing import NamedTuple

from conftest import SEED, SEED_CONFIG

from pipeline import build as build_module
from pipeline.build import Inputs, _render_order
from pipeline.diagnostics import warning
from pipeline.formats import FORMATS, Format


class _Begun(NamedTuple):
    render_first: bool


def test_only_a_stage_that_asks_and_needs_no_other_renders_first():
    stages = list(FORMATS.values())
    fixed = ["content", "epub", "captions", "pdf", "html"]
    assert [f.name for f in _render_order(stages, {})] == fixed
    assert [f.name for f in _render_order(stages, {"pdf": _Begun(False)})] == fixed
    # a rebuild's PDFs: the booklet's assembly then starts before this process makes the EPUB
    assert [f.name for f in _render_order(stages, {"pdf": _Begun(True)})] == ["pdf", *fixed[:3], "html"]
    # the HTML site links to the other stages' files: it never goes first
    assert [f.name for f in _render_order(stages, {"html": _Begun(True)})] == fixed


def test_stage_order_of_starts_renders_and_diagnostics(tmp_path, monkeypatch):
    """A first build starts the stages in order; a rebuild starts first the stage the workers
    warm up for. A stage whose start asked to render first does, right after its start (in a
    rebuild, before the other stages start), and still reports its diagnostics after the
    stages before it in the fixed order."""
    calls: list[str] = []

    def stage(name: str, first: bool, warm: bool) -> Format:
        module = types.ModuleType(f"carepress_test_stage_{name}")

        def start(_collection, _ctx):
            calls.append(f"start {name}")
            return _Begun(first)

        def render(collection, ctx):
            calls.append(f"render {name}")
            ctx.diagnostics.append(warning("CP999", f"from {name}", f"{name}.txt", 1))
            ctx.parts.put(ctx.parts.key("test", name, collection.title), b"a part")  # the next build is a rebuild
            return {f"{name}.txt": collection.title.encode()}

        module.start, module.render = start, render
        monkeypatch.setitem(sys.modules, module.__name__, module)
        return Format(name, module.__name__, name, warm_up="x:y" if warm else "")

    stages = [stage("a", False, False), stage("b", True, True)]
    monkeypatch.setattr(build_module, "resolve", lambda _names: stages)
    source, out = tmp_path / SEED.name, tmp_path / "out"
    source.write_bytes(SEED.read_bytes())
    result = build_module.build(Inputs([source], SEED_CONFIG, None), ["a", "b"], out)
    assert result.status == 0, result.diagnostics
    assert calls == ["start a", "start b", "render b", "render a"]
    assert [d.message for d in result.diagnostics if d.code == "CP999"] == ["from a", "from b"]
    assert (out / "a.txt").read_bytes() == (out / "b.txt").read_bytes()
    calls.clear()
    source.write_bytes(SEED.read_bytes().replace(b"jerky movements", b"jerky head movements"))
    result = build_module.build(Inputs([source], SEED_CONFIG, None), ["a", "b"], out)
    assert result.status == 0 and calls == ["start b", "render b", "start a", "render a"]
    assert [d.message for d in result.diagnostics if d.code == "CP999"] == ["from a", "from b"]


def test_a_second_build_into_the_same_folder_waits_for_the_first(tmp_path):
    """Builds share an output folder's staging area and manifest: one at a time writes it."""
    import subprocess

    from conftest import ROOT

    out = tmp_path / "out"
    command = [sys.executable, "-m", "pipeline", "build", "--quiet", "--formats", "content", "--source", str(SEED),
               "--config", str(SEED_CONFIG), "--out", str(out)]
    with build_module._writing(out):  # as a build into it would hold it
        second = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(3)
        assert second.poll() is None and not out.exists()  # still waiting: nothing written
    assert second.wait(120) == 0
    assert "waiting for another build writing" in second.stderr.read()
    assert (out / "content.json").is_file()
    # another folder is another lock
    with build_module._writing(tmp_path / "other"):
        assert subprocess.run(command, cwd=ROOT, capture_output=True, timeout=120).returncode == 0
    # and no lock file is left behind
    import hashlib
    import tempfile

    for folder in (out, tmp_path / "other"):
        name = hashlib.sha256(os.path.realpath(folder).encode()).hexdigest()[:32]
        assert not os.path.exists(os.path.join(tempfile.gettempdir(), f"carepress-{name}.lock"))


def test_builds_waiting_in_turn_each_get_the_lock_alone(tmp_path):
    """The holder removes the lock file: a waiter holding the removed file tries again, so two
    waiters never both think they hold the lock."""
    import multiprocessing

    out = tmp_path / "out"
    log = tmp_path / "log"
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_hold, args=(out, log, n)) for n in range(4)]
    with build_module._writing(out):
        for worker in workers:
            worker.start()
        time.sleep(1)
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    events = log.read_text().split()
    assert len(events) == 8
    assert all(events[i][0] == "+" and events[i + 1] == "-" + events[i][1:] for i in range(0, 8, 2))  # never two


def _hold(out, log, n) -> None:
    with build_module._writing(out):
        with open(log, "a") as handle:
            handle.write(f"+{n}\n")
        time.sleep(0.2)
        with open(log, "a") as handle:
            handle.write(f"-{n}\n")


def test_a_rebuild_lets_the_booklets_assembly_have_the_cpu_and_takes_it_back(tmp_path, monkeypatch):
    """In a small rebuild the booklet is assembled in a child while this process makes the other
    formats at idle priority (Forked.give_cpu); the build ends with its priority back, its
    garbage collector unfrozen, and the booklet's opened parts spared until the next build."""
    import gc

    from pipeline import formats

    seen: list[int] = []
    give = formats.Forked.give_cpu

    def give_and_look(self):
        give(self)
        seen.append(os.sched_getscheduler(0))

    monkeypatch.setattr(formats.Forked, "give_cpu", give_and_look)
    source, out = tmp_path / SEED.name, tmp_path / "out"
    source.write_bytes(SEED.read_bytes())
    formats_wanted = ["content", "pdf", "html"]
    assert build_module.build(Inputs([source], SEED_CONFIG, None), formats_wanted, out,
                              execution={"jobs": 2}).status == 0
    assert seen == []  # a first build renders too much for that: its stages keep their order
    source.write_bytes(SEED.read_bytes().replace(b"jerky movements", b"jerky head movements"))
    result = build_module.build(Inputs([source], SEED_CONFIG, None), formats_wanted, out, execution={"jobs": 2})
    assert result.status == 0, result.diagnostics
    assert seen == [os.SCHED_IDLE]
    assert os.sched_getscheduler(0) == os.SCHED_OTHER and gc.get_freeze_count() == 0
    spared = list(formats._SPARED)
    assert spared and all(part.pdf.pages for part in spared[0])  # the opened parts, not yet freed
    assert build_module.build(Inputs([source], SEED_CONFIG, None), formats_wanted, out,
                              execution={"jobs": 2}).cached
    assert formats._SPARED == []  # freed as the next build started


def test_the_cpu_is_taken_back_when_the_build_fails_after_yielding(tmp_path, monkeypatch):
    from pipeline import formats

    def yield_then_fail(_c, _ctx):
        formats.Forked(lambda: b"made").give_cpu()
        raise RuntimeError("a renderer bug after yielding")

    module = types.ModuleType("carepress_test_stage_yield")
    module.render = yield_then_fail
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setattr(build_module, "resolve", lambda _names: [Format("y", module.__name__, "y")])
    result = build_module.build(Inputs([SEED], SEED_CONFIG, None), ["y"], tmp_path / "out")
    assert result.status == 1 and "a renderer bug after yielding" in str(result.diagnostics)
    assert os.sched_getscheduler(0) == os.SCHED_OTHER
