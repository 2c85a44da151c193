"""Dynamic micro-batching: concurrent requests' lines grouped into one model call.

A bounded `asyncio.Queue` holds the lines waiting for the model. One worker task takes the
first waiting line, then keeps taking lines until it has `max_batch` of them or `max_wait_ms`
have passed since the first, and runs the batch function in a thread of its own (never on the
event loop; one model call at a time, so a runtime that is not thread-safe is safe). A full
queue is refused at once (`QueueFull`), which the server answers with 503 and Retry-After.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from typing import Any, Callable, Sequence


class QueueFull(Exception):
    """The batcher's queue cannot take the lines of this request now."""


class MicroBatcher:
    """Group items submitted from concurrent coroutines into calls of `fn(items) -> results`.

    Args:
        fn: called in a worker thread with a list of items; returns one result per item, in order.
        max_batch: most items per call.
        max_wait_ms: longest wait for more items after the first one of a batch.
        max_queue: most items waiting; `submit` raises `QueueFull` beyond it.
    """

    def __init__(self, fn: Callable[[list[Any]], Sequence[Any]], max_batch: int = 16, max_wait_ms: float = 5.0,
                 max_queue: int = 256):
        if max_batch < 1 or max_queue < 1 or max_wait_ms < 0:
            raise ValueError(f"max_batch and max_queue must be positive and max_wait_ms >= 0. Received: "
                             f"max_batch={max_batch}, max_queue={max_queue}, max_wait_ms={max_wait_ms}")
        self.fn = fn
        self.max_batch = int(max_batch)
        self.max_wait = float(max_wait_ms) / 1000.0
        self.max_queue = int(max_queue)
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self.batches = 0
        self.items = 0

    def start(self) -> None:
        """Start the worker on the running event loop (idempotent)."""
        if self._task is not None and not self._task.done():
            return
        self._queue = asyncio.Queue(maxsize=self.max_queue)
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="vhr-model")
        self._task = asyncio.get_running_loop().create_task(self._worker())

    async def stop(self) -> None:
        """Stop the worker; items still waiting get a RuntimeError."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._queue is not None:
            while not self._queue.empty():
                _, fut = self._queue.get_nowait()
                if not fut.done():
                    fut.set_exception(RuntimeError("the server is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None

    @property
    def waiting(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    async def submit_many(self, items: Sequence[Any]) -> list[Any]:
        """Queue `items` together (all or none) and wait for their results.

        Raises:
            QueueFull: the queue has no room for all of them.
        """
        self.start()
        assert self._queue is not None
        if self._queue.qsize() + len(items) > self.max_queue:
            raise QueueFull(f"{self._queue.qsize()} lines are waiting (limit {self.max_queue})")
        loop = asyncio.get_running_loop()
        futures = []
        for item in items:  # no await in this loop: the room checked above is still there
            fut = loop.create_future()
            self._queue.put_nowait((item, fut))
            futures.append(fut)
        return list(await asyncio.gather(*futures))

    async def _worker(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            deadline = time.monotonic() + self.max_wait
            while len(batch) < self.max_batch:
                if not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                    continue
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), left))
                except asyncio.TimeoutError:
                    break
            batch = [(item, fut) for item, fut in batch if not fut.done()]  # drop cancelled requests
            if not batch:
                continue
            try:
                results = await loop.run_in_executor(self._executor, self.fn, [item for item, _ in batch])
            except Exception as ex:  # one failed batch must not stop the server
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(ex)
                continue
            self.batches += 1
            self.items += len(batch)
            for (_, fut), result in zip(batch, results):
                if not fut.done():
                    fut.set_result(result)
