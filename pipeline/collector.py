"""Python's cyclic garbage collector, paused where it only costs time."""

from __future__ import annotations

import gc
from contextlib import contextmanager


@contextmanager
def paused():
    """The cyclic garbage collector paused (as it was, after). Reference counting still frees
    almost everything; what the collector would find in a build or a deduplication is little,
    and each of its passes walks the growing heap again. A process forked meanwhile inherits the
    pause: a long-lived one (a worker) turns the collector back on."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
