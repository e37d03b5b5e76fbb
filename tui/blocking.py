"""Run a blocking client call without holding the dashboard back, not even when it quits.

Why not ``@work(thread=True)``: Textual runs thread workers in asyncio's default executor, and
``asyncio.run`` joins that executor when the app exits. A call blocked in the agent (a rollback
waits for its deployment, the event stream waits up to 15 s for a heartbeat) would then keep
``q`` from quitting until it returns. So the dashboard's workers are asyncio workers
(``@work(exclusive=True, exit_on_error=False)``: cancellable, one per kind of load) that await
the call made here, on a daemon thread: a cancelled worker forgets the answer, and the process
exits without waiting for it (the agent finishes a started change on its own).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def off_thread(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[T] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if answer.done():  # the worker was cancelled meanwhile
            return
        if error is not None:
            answer.set_exception(error)
        else:
            answer.set_result(result)

    def run() -> None:
        try:
            result, error = call(*args, **kwargs), None
        except BaseException as caught:  # handed to the awaiting worker, which decides
            result, error = None, caught
        try:
            loop.call_soon_threadsafe(settle, result, error)
        except RuntimeError:  # the loop is closed: the app has quit, nobody waits for this
            pass

    threading.Thread(target=run, name=f"id1-tui:{getattr(call, '__name__', 'call')}", daemon=True).start()
    return await answer
