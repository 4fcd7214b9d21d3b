"""Python's cyclic garbage collector, set for a process that serves for a long time.

Measured on `gradesync serve` under the throughput benchmark (docs/benchmarks-journal.md,
"The garbage collector"): with the interpreter's defaults the collector took about a tenth of the
process's CPU. Most of it went to full collections, each walking every object the process
holds, above all the ones it made at start (modules, SQLAlchemy's tables and compiled
statements, the web app's routes), which live as long as the process. A full collection
of that heap took more than 100 ms, during which the event loop answers nothing and sends
nothing. And with the young generation collected every 700 allocations, rows and requests
that live a few hundred milliseconds (a claimed batch, a send in flight) outlive two
collections, reach the old generation and make full collections come sooner.

So, once the process is built: what it holds then is set aside for good (`gc.freeze`: the
collector no longer walks it; reference counting still frees it), and the young generation
is collected every `YOUNG_THRESHOLD` allocations instead of 700. Both are what CPython
documents for long-running servers; neither changes what is freed, only how often the
collector looks.
"""

from __future__ import annotations

import gc

# Allocations between collections of the young generation (CPython's default: 700). A
# batch of rows in flight is a few thousand objects: collected after it is done, not while.
YOUNG_THRESHOLD = 10_000

# What `settle_for_serving` set aside. Kept rather than asked again: CPython counts the
# frozen objects by walking them (about 20 ms for a served process's 150,000, the GIL held),
# and nothing else here freezes more.
_frozen = 0


def settle_for_serving() -> int:
    """Collect once, set aside what the process holds now, collect the young generation less
    often. Call after the process is built, before it serves. The objects set aside."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
    global _frozen
    _frozen = gc.get_freeze_count()
    return _frozen


def frozen_objects() -> int:
    """The objects set aside when the process settled for serving; 0 before or without."""
    return _frozen
