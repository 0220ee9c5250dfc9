"""One thread of its own for the package's database work (storage, alarms, status).

``sync_to_async`` runs sync code in Django's one shared thread by default, and every
Django request needs that thread too (its ``request_started`` signal closes old
connections there). A database that hangs would hold that thread inside a storage call,
and with it every HTTP request of the process, the staff status view included; a
timeout on the storage call would only stop the caller from waiting. Here the work
runs in one thread apart: a hanging database stalls storage and alarms (whose calls
time out, ``STORAGE_TIMEOUT``) and nothing else. One thread, like Django's, so calls
run one at a time and each thread keeps its own connection; a call still waiting its
turn when its caller gave up never runs.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import sync_to_async

_executor: ThreadPoolExecutor | None = None


def executor() -> ThreadPoolExecutor:
    """The package's database thread (created on first use)."""
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="durable-db")
    return _executor


async def run_db(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``function(*args, **kwargs)`` in the database thread; its result."""
    call = sync_to_async(function, thread_sensitive=False, executor=executor())
    return await call(*args, **kwargs)
