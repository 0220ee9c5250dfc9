"""Views that reach ``Safe`` objects through stubs (tests/test_stubs.py).

Each answers JSON with the serving process's pid, so a test can tell where code ran.
Exceptions are reported as ``{"error": <class name>, "message": ...}`` with status 500.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from django.http import HttpRequest, JsonResponse

from django_durable.stubs import DurableStub

from .storage_consumers import ROUNDTRIP_VALUE, Safe, StorageBench, StorageMonitor


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=repr))


def _failure(exc: BaseException) -> JsonResponse:
    return JsonResponse(
        {"error": type(exc).__name__, "module": type(exc).__module__, "message": str(exc)},
        status=500,
    )


async def safe_call(request: HttpRequest, room: str, method: str) -> JsonResponse:
    """``?args=<JSON list>``: call any method name of ``Safe(room)``."""
    args = json.loads(request.GET.get("args", "[]"))
    try:
        result = await getattr(Safe.get(room), method)(*args)
    except Exception as exc:
        return _failure(exc)
    return JsonResponse({"result": _jsonable(result), "pid": os.getpid()})


async def safe_roundtrip(request: HttpRequest, room: str) -> JsonResponse:
    """Send ``ROUNDTRIP_VALUE`` (positionally and as a keyword) and compare what comes back."""
    try:
        result = await Safe.get(room).echo(*ROUNDTRIP_VALUE, value=ROUNDTRIP_VALUE)
    except Exception as exc:
        return _failure(exc)
    sent = list(ROUNDTRIP_VALUE)
    returned = list(result["args"])
    return JsonResponse(
        {
            "result_type": type(result["args"]).__name__,
            "equal": returned == sent and result["kwargs"] == {"value": ROUNDTRIP_VALUE},
            "types_sent": [type(a).__name__ for a in sent],
            "types_seen": result["types"],
            "types_returned": [type(a).__name__ for a in returned],
            "nested_types": [type(a).__name__ for a in result["kwargs"]["value"]],
            "pid": os.getpid(),
        }
    )


async def not_durable(request: HttpRequest) -> JsonResponse:
    """A stub for a class that is not a DurableConsumer (a plain Channels consumer)."""
    try:
        result = await DurableStub(StorageMonitor, "x").receive_json({})  # type: ignore[arg-type]
    except Exception as exc:
        return _failure(exc)
    return JsonResponse({"result": _jsonable(result)})


async def bench_stub(request: HttpRequest, room: str) -> JsonResponse:
    """For bench/storage_bench.py: ``?n=&hibernate=0|1``, n sequential ``Safe(room).pid()``
    calls timed here (ns); with ``hibernate=1`` the object is hibernated in this process
    before each call (outside the timing)."""
    from django_durable.testing import hibernate

    n = int(request.GET.get("n", "100"))
    hibernated = request.GET.get("hibernate") == "1"
    stub = Safe.get(room)
    samples: list[int] = []
    pids: set[int] = set()
    for _ in range(n):
        if hibernated:
            await hibernate(Safe, room)
        started = time.perf_counter_ns()
        pids.add(await stub.pid())
        samples.append(time.perf_counter_ns() - started)
    return JsonResponse({"samples": samples, "object_pids": sorted(pids), "pid": os.getpid()})


async def bench_storage(request: HttpRequest, room: str) -> JsonResponse:
    """For bench/storage_bench.py: ``StorageBench(room).measure(k, size, batch)``."""
    k = int(request.GET.get("k", "1000"))
    size = int(request.GET.get("size", "100"))
    batch = int(request.GET.get("batch", "100"))
    return JsonResponse(await StorageBench.get(room).measure(k, size, batch))
