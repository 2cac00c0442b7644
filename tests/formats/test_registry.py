"""The format registry's machinery: work in a forked child (Forked), settling, worker pools."""

from __future__ import annotations

import os
import sys
import time
import types

import pytest

from pipeline.diagnostics import CarepressError, error
from pipeline.formats import FORMATS, Forked, Workers, resolve, settle


def _boom() -> bytes:
    raise CarepressError([error("CP130", "pdf: the child could not")])


def _value_error() -> bytes:
    raise ValueError("overlay has 3 pages, the booklet 4")


def _die() -> bytes:
    os._exit(9)


def test_forked_gives_the_childs_bytes_and_sees_this_process():
    here = [b"made ", b"before the fork"]
    assert Forked(lambda: b"".join(here)).result() == b"made before the fork"
    assert settle({"a": b"x", "b": Forked(lambda: b"y")}) == {"a": b"x", "b": b"y"}


def test_forked_raises_what_the_child_raised():
    with pytest.raises(CarepressError) as caught:
        Forked(_boom).result()
    assert caught.value.diagnostics[0].code == "CP130"
    with pytest.raises(ValueError, match="overlay has 3 pages"):
        Forked(_value_error).result()
    with pytest.raises(RuntimeError, match="status 9"):
        Forked(_die).result()


def test_stage_order_and_prerequisites():
    assert list(FORMATS) == ["content", "epub", "captions", "pdf", "html"]
    assert [f.name for f in resolve(["html"])] == ["content", "epub", "captions", "pdf", "html"]
    assert [f.name for f in resolve(["captions"])] == ["content", "captions"]


def test_a_rebuild_warms_one_worker_and_starts_the_pool_only_when_asked():
    workers = Workers(2, [], rebuild=True)
    try:
        assert workers.first is not None and workers._pool is None
        assert workers.first.submit(sum, [1, 2]).result() == 3
        assert workers.pool.submit(max, [1, 2]).result() == 2  # started now
    finally:
        workers.shutdown()
    cold = Workers(2, [], rebuild=False)
    try:
        assert cold.first is None and cold._pool is not None
    finally:
        cold.shutdown()


def test_workers_rehearse_only_when_they_start_before_there_is_work(tmp_path, monkeypatch):
    """A first build's workers warm up while this process loads: they rehearse (a little work,
    so the first document does not pay for first use). A rebuild's worker has its documents
    queued by the time it has loaded: it only loads."""
    module = types.ModuleType("carepress_test_warm_up")

    def warm(rehearse: bool = True) -> None:
        (tmp_path / f"{os.getpid()}-{time.monotonic_ns()}").write_text(str(rehearse))  # one file a call

    module.warm = warm
    monkeypatch.setitem(sys.modules, module.__name__, module)  # the forked workers have it too
    for rebuild, count, said in ((True, 1, "False"), (False, 2, "True")):
        for old in tmp_path.iterdir():
            old.unlink()
        workers = Workers(2, [f"{module.__name__}:warm"], rebuild=rebuild)
        try:
            deadline = time.monotonic() + 30
            while len(list(tmp_path.iterdir())) < count and time.monotonic() < deadline:
                time.sleep(0.02)
            assert sorted(path.read_text() for path in tmp_path.iterdir()) == [said] * count
        finally:
            workers.shutdown()


def test_workers_know_when_a_worker_died():
    workers = Workers(2, [])
    try:
        assert workers.working()
        pids = workers.pool.submit(os.getpid).result(), workers.pool.submit(os.getpid).result()
        os.kill(pids[0], 9)
        deadline = time.monotonic() + 30  # the pool notices the death on its own thread
        while workers.working() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not workers.working()
    finally:
        workers.shutdown()
