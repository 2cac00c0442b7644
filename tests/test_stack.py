"""pipeline.stack: calls made where deep calls under them do not map frame chunks."""

import resource
import sys

import pytest

from pipeline.formats import fork_pool
from pipeline.stack import roomy


def _down(depth: int) -> int:
    return _down(depth - 1) if depth else 0


def _up_and_down(start: int, times: int = 5000) -> None:
    """Down ``start`` calls, then a few more and back, ``times`` times: where a frame chunk
    ends between those depths, each time maps and unmaps it."""
    if start:
        return _up_and_down(start - 1, times)
    for _ in range(times):
        _down(8)


def _worst_page_faults(call) -> int:
    worst = 0
    for start in range(0, 600, 7):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        call(start)
        worst = max(worst, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    return worst


def test_roomy_calls_the_function_with_its_arguments():
    assert roomy(lambda a, /, b, *, c: (a, b, c), 1, 2, c=3) == (1, 2, 3)
    with pytest.raises(ValueError, match="kept"):
        roomy(_raises, "kept")


def _raises(message: str) -> None:
    raise ValueError(message)


def test_deep_calls_under_roomy_map_no_frame_chunks():
    if sys.version_info[:2] == (3, 11):  # the cause: somewhere, every call down and up maps a chunk
        assert _worst_page_faults(_up_and_down) > 5000
    assert _worst_page_faults(lambda start: roomy(_up_and_down, start)) < 500


def _under_roomy() -> bool:
    frame = sys._getframe()
    while frame is not None:
        if frame.f_code is roomy.__code__:
            return True
        frame = frame.f_back
    return False


def test_worker_tasks_run_under_roomy():
    pool = fork_pool(1)
    try:
        assert pool.submit(_under_roomy).result()
    finally:
        pool.shutdown()
