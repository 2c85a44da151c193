"""How vhr starts worker processes (store build, batch transforms, synthesis)."""

from __future__ import annotations

import multiprocessing
import sys
from typing import Sequence

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
