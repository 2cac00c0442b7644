"""Room on Python's frame stack, so deep calls do not map and unmap memory again and again.

CPython 3.11 keeps the frames of Python calls on a stack of 16 KiB chunks, each mapped
(``mmap``) when a call needs one more and unmapped as soon as the call that needed it returns.
Code that goes deep and comes back again and again (WeasyPrint's layout and drawing: a box's
children, their lines, their text) then maps a chunk, faults its pages in and unmaps it for a
great many calls, if its depth goes up and down across a chunk's end: where that end falls
depends on how deep the code started. A worker process's PDFs started where it did, at about
190,000 page faults each per cold build of the 1,000 synthetic topics (perf: 3.3% of the build's
CPU in page faults and ``munmap``, under ``_PyThreadState_BumpFramePointerSlow``); rendering 96
handouts in one process from each of ten depths took 1,900 to 14,500 page faults (20 to 150 a
handout) and 2.03 to 2.23 CPU-s.

:func:`roomy` calls a function from a frame so large (its code claims room for 33,000 values
more on its evaluation stack, never used) that Python gives it a chunk of its own of 512 KiB,
and the calls under it use the 260 KiB left after it: none of them maps a chunk (the same 96
handouts: 69 page faults in all, 1.96 CPU-s). The chunk is mapped and unmapped once per call of
:func:`roomy` (about 12 microseconds).
"""

from __future__ import annotations

_ROOM = 33_000  # slots of the frame itself: its chunk is 65,536 slots (the next power of two)


def roomy(fn, /, *args, **kwargs):
    """``fn(*args, **kwargs)``, called where the calls under it have room (see the module)."""
    return fn(*args, **kwargs)


# the same function with room for 33,000 more values on its evaluation stack, never used: Python
# sizes a frame by its code's stack size but, unlike its local variables, does not clear that room
roomy.__code__ = roomy.__code__.replace(co_stacksize=roomy.__code__.co_stacksize + _ROOM)
