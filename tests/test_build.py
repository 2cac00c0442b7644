"""The build's stages: the order they start and render in, and the order their diagnostics keep."""

from __future__ import annotations

import os
import sys
import time
import types

from conftest import SEED, SEED_CONFIG

from pipeline import build as build_module
from pipeline.build import Inputs
from pipeline.diagnostics import warning
from pipeline.formats import Format


def test_stage_order_of_starts_renders_and_diagnostics(tmp_path, monkeypatch):
    """A first build starts the stages in order; a rebuild starts first the stage the workers
    warm up for. Every build renders them in the fixed order, and reports their diagnostics in
    it, what their starts reported included."""
    calls: list[str] = []

    def stage(name: str, warm: bool) -> Format:
        module = types.ModuleType(f"carepress_test_stage_{name}")

        def start(_collection, ctx):
            calls.append(f"start {name}")
            ctx.diagnostics.append(warning("CP999", f"from {name}'s start", f"{name}.txt", 1))

        def render(collection, ctx):
            calls.append(f"render {name}")
            ctx.diagnostics.append(warning("CP999", f"from {name}", f"{name}.txt", 1))
            ctx.parts.put(ctx.parts.key("test", name, collection.title), b"a part")  # the next build is a rebuild
            return {f"{name}.txt": collection.title.encode()}

        module.start, module.render = start, render
        monkeypatch.setitem(sys.modules, module.__name__, module)
        return Format(name, module.__name__, name, warm_up="x:y" if warm else "")

    stages = [stage("a", False), stage("b", True)]
    monkeypatch.setattr(build_module, "resolve", lambda _names: stages)
    source, out = tmp_path / SEED.name, tmp_path / "out"
    source.write_bytes(SEED.read_bytes())
    result = build_module.build(Inputs([source], SEED_CONFIG, None), ["a", "b"], out)
    assert result.status == 0, result.diagnostics
    assert calls == ["start a", "start b", "render a", "render b"]
    in_order = ["from a's start", "from a", "from b's start", "from b"]
    assert [d.message for d in result.diagnostics if d.code == "CP999"] == in_order
    assert (out / "a.txt").read_bytes() == (out / "b.txt").read_bytes()
    calls.clear()
    source.write_bytes(SEED.read_bytes().replace(b"jerky movements", b"jerky head movements"))
    result = build_module.build(Inputs([source], SEED_CONFIG, None), ["a", "b"], out)
    assert result.status == 0 and calls == ["start b", "start a", "render a", "render b"]
    assert [d.message for d in result.diagnostics if d.code == "CP999"] == in_order


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


def test_a_rebuild_assembles_the_booklet_as_soon_as_its_part_is_back(tmp_path, monkeypatch):
    """In a small rebuild the booklet's assembling child is forked while its new part renders and
    fed the part when it is back (pdf._Assembly): forked by the main thread, as every child is
    (one forked by another thread hung on an import lock), it opens the cached parts itself
    meanwhile, and makes the same booklet as a clean build's. The build ends with the garbage
    collector on again; a first build's opened parts are spared until the next build."""
    import gc
    import threading

    from pipeline import formats
    from pipeline.formats import pdf

    forks: list[tuple[bool, bool, bool]] = []
    fork = formats.Forked.__init__

    def fork_and_look(self, make, fed=False, prepare=None):
        forks.append((threading.current_thread() is threading.main_thread(), fed, prepare is not None))
        fork(self, make, fed, prepare)

    monkeypatch.setattr(formats.Forked, "__init__", fork_and_look)
    source, out = tmp_path / SEED.name, tmp_path / "out"
    source.write_bytes(SEED.read_bytes())
    formats_wanted = ["content", "pdf", "html"]
    assert build_module.build(Inputs([source], SEED_CONFIG, None), formats_wanted, out,
                              execution={"jobs": 2}).status == 0
    assert forks == [(True, False, False)]  # a first build assembles the booklet once all is rendered
    forks.clear()
    early = pdf._early_booklet
    started: list = []
    monkeypatch.setattr(pdf, "_early_booklet", lambda *args: started.append(early(*args)) or started[-1])
    source.write_bytes(SEED.read_bytes().replace(b"jerky movements", b"jerky head movements"))
    result = build_module.build(Inputs([source], SEED_CONFIG, None), formats_wanted, out, execution={"jobs": 2})
    assert result.status == 0, result.diagnostics
    assert len(started) == 1 and forks == [(True, True, True)]  # the child opens the cached parts
    assert formats._SPARED == []  # so this process opened none
    assert gc.isenabled()
    clean = tmp_path / "clean"
    assert build_module.build(Inputs([source], SEED_CONFIG, None), formats_wanted, clean, use_cache=False,
                              execution={"jobs": 2}).status == 0
    assert (out / "pdf/dystonia-education-booklet.pdf").read_bytes() == \
        (clean / "pdf/dystonia-education-booklet.pdf").read_bytes()
    spared = list(formats._SPARED)
    assert spared and all(part.pdf.pages for part in spared[0])  # a first build's opened parts, not yet freed
    assert build_module.build(Inputs([source], SEED_CONFIG, None), formats_wanted, out,
                              execution={"jobs": 2}).cached
    assert formats._SPARED == []  # freed as the next build started


def test_the_early_assembly_starts_once_every_part_is_back_from_the_thread_that_gets_the_last():
    """pdf._Assembly: its child (forked beforehand) is fed the rendered files by the done-callback
    of the last of its futures; a failed part is fed as nothing (the child ends) and raised by
    result()."""
    import threading
    from concurrent.futures import Future

    from pipeline.formats import pdf

    class Child:  # stands in for a fed Forked
        def __init__(self):
            self.fed, self.thread = [], None

        def feed(self, value):
            self.fed.append(value)
            self.thread = threading.current_thread()

        def result(self):
            return self.fed[0]

    a, b, child = Future(), Future(), Child()
    assembly = pdf._Assembly([({"cached": b"c"}, {}, [a]), ({}, {}, [b])], child)
    a.set_result(({"a": b"1"}, None, {}))
    assert child.fed == []  # b is not back yet
    worker = threading.Thread(target=b.set_result, args=(({"b": b"2"}, None, {}),))
    worker.start()
    worker.join()
    assert child.thread is worker
    assert assembly.result() == {"a": b"1", "b": b"2"}  # the cached files the child has already

    failed, child = Future(), Child()
    assembly = pdf._Assembly([({}, {}, [failed])], child)
    failed.set_exception(ValueError("a part failed"))
    assert child.fed == [None]
    try:
        assembly.result()
    except ValueError as exc:
        assert str(exc) == "a part failed"
    else:
        raise AssertionError("a failed part must fail the booklet")

    done, child = Future(), Child()
    done.set_result(({"d": b"3"}, None, {}))
    assert pdf._Assembly([({}, {}, [done])], child).result() == {"d": b"3"}  # back already: fed at once
    child = Child()
    assert pdf._Assembly([({"e": b"4"}, {}, [])], child).result() == {}  # nothing to wait for


def test_a_fed_child_makes_what_it_is_given_and_ends_on_nothing():
    from pipeline import formats

    child = formats.Forked(lambda value: value * 2, fed=True)
    child.feed(b"ab")
    assert child.result() == b"abab"
    child = formats.Forked(lambda value: value, fed=True)
    child.feed(None)
    try:
        child.result()
    except RuntimeError as exc:
        assert "ended" in str(exc)
    else:
        raise AssertionError("a child fed nothing makes nothing")
    # what it prepares before it waits is made's first argument; what preparing raised, its result
    child = formats.Forked(lambda ready, value: ready + value, fed=True, prepare=lambda: b"ready:")
    child.feed(b"fed")
    assert child.result() == b"ready:fed"
    child = formats.Forked(lambda ready, value: value, fed=True, prepare=lambda: 1 / 0)
    child.feed(b"fed")
    try:
        child.result()
    except ZeroDivisionError:
        pass
    else:
        raise AssertionError("a failed preparation is the child's result")


def test_a_build_pauses_the_garbage_collector_and_its_workers_collect(tmp_path, monkeypatch):
    """The cyclic collector is off while a build loads and renders (its passes cost a one-topic
    rebuild about a tenth of a second) and on again after it, also after a failed build; a
    worker forked during the build turns it back on (it renders thousands of documents)."""
    import gc

    seen: list[tuple[bool, bool]] = []
    stages = build_module._stages

    def look(loaded, ctx, *args):
        seen.append((gc.isenabled(), ctx.workers.pool.submit(gc.isenabled).result()))
        return stages(loaded, ctx, *args)

    monkeypatch.setattr(build_module, "_stages", look)
    source, out = tmp_path / SEED.name, tmp_path / "out"
    source.write_bytes(SEED.read_bytes())
    assert gc.isenabled()
    assert build_module.build(Inputs([source], SEED_CONFIG, None), ["content", "pdf"], out,
                              execution={"jobs": 2}).status == 0
    assert seen == [(False, True)] and gc.isenabled()
    source.write_bytes(b"Title\n\n\xff\xfe not UTF-8\n")
    assert build_module.build(Inputs([source], SEED_CONFIG, None), ["content"], out).status == 1
    assert gc.isenabled()
