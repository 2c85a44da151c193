"""How vhr starts worker processes and runs work ahead, in order (store build, batches, synthesis)."""

from __future__ import annotations

import multiprocessing
import sys
from collections import deque
from concurrent.futures import Executor
from typing import Callable, Iterable, Iterator, Sequence

# Frameworks that run their own thread pools: forking a process that has loaded one is unsafe.
_THREADED_FRAMEWORKS = ("tensorflow", "jax", "torch")


def process_context(preload: Sequence[str] = ()):
    """A multiprocessing context: fork when it is safe, else forkserver (spawn as a last resort).

    fork starts workers at once and needs no `if __name__ == "__main__"` guard in the caller's
    script. It is unsafe once a framework with its own thread pools is loaded (a child can inherit
    a lock held mid-operation), so then the workers come from a clean forkserver process, which
    imports the `preload` modules once instead of in every worker.
    """
    methods = multiprocessing.get_all_start_methods()
    threaded = any(name in sys.modules for name in _THREADED_FRAMEWORKS)
    if "fork" in methods and not threaded:
        return multiprocessing.get_context("fork")
    if "forkserver" in methods:
        ctx = multiprocessing.get_context("forkserver")
        if preload:
            ctx.set_forkserver_preload(list(preload))
        return ctx
    return multiprocessing.get_context("spawn")


def ordered_map(fn: Callable, items: Iterable[tuple], pool: Executor | None = None, ahead: int = 2) -> Iterator:
    """`fn(*args)` for each args tuple of `items`, yielded in input order, at most `ahead` in flight.

    The one bounded, in-order executor of vhr: store build chunks, reader batches and training
    batches all go through it. With `pool=None` everything runs in this thread. The caller owns
    the pool (and shuts it down); a generator closed early cancels what is still queued.
    """
    if pool is None:
        for args in items:
            yield fn(*args)
        return
    if ahead < 1:
        raise ValueError(f"ahead must be positive. Received: ahead={ahead}")
    pending: deque = deque()
    try:
        for args in items:
            pending.append(pool.submit(fn, *args))
            if len(pending) >= ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for f in pending:
            f.cancel()
