"""Plain-HTTP control endpoints of a cluster benchmark server, and stage instrumentation.

- ``GET /bench/status``: ``{"pid", "sockets", "live", "owned"}``: sockets held here
  (durable gateways plus open Channels consumers), the ``ClusterRoom`` ids live in this
  process, and the object keys whose lease this process holds;
- ``GET /bench/stages``: the stage marks since the last call (see :mod:`clusterapp.stages`).

:func:`instrument` wraps three methods of django-durable's transport *from the outside*
(django_durable itself is not changed) to mark when a broadcast's local send loop
starts and ends, and when a process receives a forwarded trigger or another process's
``durable.send``. Only messages for at least 50 sockets (and ``bcast:`` triggers) are
marked, so echo and failover traffic is not slowed. With ``BENCH_REMOTE_FIRST=1`` it also
swaps the halves of ``RedisTransport.send`` (an experiment: :func:`remote_first_send`).
"""

from __future__ import annotations

import json
import os
from typing import Any

from clusterapp import stages

BIG = 50


def status() -> dict[str, Any]:
    from django.conf import settings

    from clusterapp import plain

    result: dict[str, Any] = {
        "pid": os.getpid(),
        "sockets": plain.PLAIN_OPEN,
        "live": [],
        "owned": [],
    }
    if settings.BENCH_APP == "durable":
        from clusterapp.consumers import ClusterRoom
        from django_durable.runtime import get_runtime
        from django_durable.testing import live_object_ids

        runtime = get_runtime()
        result["sockets"] += len(runtime.sockets)
        result["live"] = sorted(live_object_ids(ClusterRoom))
        result["owned"] = sorted(getattr(runtime.layer, "owned", {}))
    return result


def instrument() -> None:
    from django_durable.transport import LocalTransport

    send_local = LocalTransport.send_local

    async def timed_send_local(self: Any, socket_ids: list[str], message: dict[str, Any]) -> int:
        if len(socket_ids) < BIG:
            return await send_local(self, socket_ids, message)
        stages.mark("send_local_start", n=len(socket_ids))
        sent = await send_local(self, socket_ids, message)
        stages.mark("send_local_done", n=sent)
        return sent

    LocalTransport.send_local = timed_send_local  # type: ignore[method-assign]

    try:
        from django_durable.cluster import RedisTransport
    except ImportError:  # no channels_redis
        return
    on_send = RedisTransport._on_send
    on_event = RedisTransport._on_event

    async def timed_on_send(self: Any, message: dict[str, Any]) -> None:
        big = len(message.get("sids") or ()) >= BIG
        if big:
            stages.mark("remote_received", n=len(message["sids"]))
        await on_send(self, message)
        if big:
            stages.mark("remote_done")

    async def timed_on_event(self: Any, message: dict[str, Any]) -> None:
        data = message.get("data")
        if isinstance(data, str) and data.startswith("bcast:"):
            stages.mark("event_received")
        await on_event(self, message)

    RedisTransport._on_send = timed_on_send  # type: ignore[method-assign]
    RedisTransport._on_event = timed_on_event  # type: ignore[method-assign]
    if os.environ.get("BENCH_REMOTE_FIRST"):
        RedisTransport.send = remote_first_send  # type: ignore[method-assign]


async def remote_first_send(
    self: Any, key: str, records: list[Any], message: dict[str, Any]
) -> int:
    """EXPERIMENT (``BENCH_REMOTE_FIRST=1``, ``cluster_bench.py --remote-first``):
    ``RedisTransport.send`` with its two halves swapped, so that the other processes get
    their ``durable.send`` before this process starts its own send loop and work in
    parallel with it. Otherwise the same as django_durable's (which is not changed)."""
    local: list[str] = []
    remote: dict[str, list[str]] = {}
    for record in records:
        if record.holder == self.channel or record.id in self.runtime.sockets:
            local.append(record.id)
        else:
            remote.setdefault(record.holder, []).append(record.id)
    sent = 0
    payload = {k: v for k, v in message.items() if k in ("text", "bytes")}
    for holder, sids in remote.items():
        try:
            await self.couriers.send(holder, {"type": "durable.send", "sids": sids, **payload})
        except Exception:
            continue
        sent += len(sids)
    if local:
        sent += await self.send_local(local, message)
    return sent


async def http_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body"):
            break
    path = scope["path"]
    code: int = 200
    body: Any
    try:
        if path == "/bench/status":
            body = status()
        elif path == "/bench/stages":
            body = stages.take()
        else:
            code, body = 404, {"error": f"no endpoint {path}"}
    except Exception as exc:  # report; never kill the server under test
        code, body = 500, {"error": f"{type(exc).__name__}: {exc}"}
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": code,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
