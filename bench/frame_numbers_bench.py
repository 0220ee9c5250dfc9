#!/usr/bin/env python
"""What numbering outgoing frames costs a broadcast, in the process that sends it.

``LocalTransport.send_local`` to ``--sockets`` gateway sockets (``LocalSocket``, with an
ASGI ``send`` that does nothing, so only django_durable's own work is timed), the same
message with and without a frame number (``django_durable.outgoing``), interleaved,
``--rounds`` times each; prints the median and minimum per broadcast and per socket.
Every round's number is a new handler run, so each socket replaces its number as it
does in the steady state. The real cost of a broadcast (daphne writing each frame) is
in ``cluster_bench.py``; this isolates the part the numbers add. No timing threshold;
run it a few times on a shared machine.

    python bench/frame_numbers_bench.py --sockets 1000 --rounds 2000
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from types import SimpleNamespace
from typing import Any

from django_durable.framing import NUMBER
from django_durable.sockets import LocalSocket
from django_durable.transport import LocalTransport


async def _nothing(message: dict[str, Any]) -> None:
    return None


async def measure(sockets: int, rounds: int) -> dict[str, list[float]]:
    runtime: Any = SimpleNamespace(sockets={})
    cls: Any = SimpleNamespace(durable_name="bench")
    for i in range(sockets):
        sock = LocalSocket(f"socket-{i:06d}", cls, "room", "bench:room", _nothing, None)
        sock.accepted = True
        runtime.sockets[sock.id] = sock
    transport = LocalTransport(runtime)
    ids = list(runtime.sockets)
    times: dict[str, list[float]] = {"plain": [], "numbered": []}
    for r in range(rounds):
        for kind in ("plain", "numbered"):
            message: dict[str, Any] = {"type": "websocket.send", "text": f"b:{r}"}
            if kind == "numbered":
                # As it arrives from another process: a list (msgpack), a new run each time.
                message[NUMBER] = [1_764_000_000_000_000, r + 1, r + 1, "sender-id", r + 1, 1]
            started = time.perf_counter()
            await transport.send_local(ids, message)
            times[kind].append((time.perf_counter() - started) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args()
    times = asyncio.run(measure(args.sockets, args.rounds))
    warm = args.rounds // 10
    medians = {}
    for kind, values in times.items():
        kept = values[warm:]
        medians[kind] = statistics.median(kept)
        print(
            f"{kind:9} median {medians[kind]:.3f} ms, min {min(kept):.3f} ms "
            f"per send_local to {args.sockets} sockets"
        )
    extra = medians["numbered"] - medians["plain"]
    print(
        f"numbers add {extra:.3f} ms per broadcast "
        f"({extra * 1000 / args.sockets * 1000:.0f} ns per socket)"
    )


if __name__ == "__main__":
    main()
