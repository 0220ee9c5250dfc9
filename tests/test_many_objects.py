"""Many objects (SPEC §12): a hibernated object holds no task, channel or reader.

End to end, on real daphne processes with ``HIBERNATE_EAGERLY``: many objects with one
socket each (two tags, so three groups per object), all hibernated; then the server's
asyncio tasks are counted (no more than one per socket plus a constant), and tag
groups are reached from outside (``group_send`` with :func:`broadcast_event`,
``broadcast_to``) and from inside (``state.broadcast``): every socket gets each message
once. On the in-memory layers with one process, and on Redis with two. Sizes stay
modest: the cost at 10,000 objects is measured in ``bench/many_objects.py``.
"""

from __future__ import annotations

from tests.cluster_harness import WAIT, Client, Cluster, oid
from tests.daphne_server import DaphneFactory, DaphneServer
from tests.waiting import wait_until

#: Objects per test, one socket each (the old code held four tasks per such object).
OBJECTS = 30
#: Tasks a server may hold beyond one per socket: its process channel's reader, the
#: group refresher, the maintenance task and alarm poller, the monitor's connection.
CONSTANT = 10


async def process(monitor: Client) -> dict[str, int]:
    return await monitor.ask({"op": "process"}, "tasks")


async def connect_objects(
    c: Cluster, servers: list[DaphneServer], count: int
) -> list[tuple[str, Client]]:
    """``count`` objects, one observer socket each (tags ``all`` and ``observers``),
    spread over ``servers``; each answered once, so its groups are joined."""
    made = []
    for i in range(count):
        room = oid()
        client = await c.client(servers[i % len(servers)], f"/ws/ledger/{room}/?observe=1")
        await client.ask({"op": "where"}, "pid")
        made.append((room, client))
    return made


async def all_hibernated(monitors: list[Client]) -> None:
    # Polls the servers: the objects hibernate by themselves, no event says when.
    async def live() -> int:
        return sum([(await process(m))["live"] for m in monitors])

    await wait_until(
        live,
        accept=lambda count: count == 0,
        message="every object to hibernate (answers: live objects)",
        timeout=WAIT,
        interval=0.05,
    )


async def check_fanout(
    objects: list[tuple[str, Client]], sender: Client, monitors: list[Client]
) -> None:
    """Interop group_send, broadcast_to and state.broadcast reach every hibernated
    object's socket once; a group message without its group is refused and counted."""
    refused = sum([(await process(m))["refused"] for m in monitors])
    for n, (room, _) in enumerate(objects):
        tag = "observers" if n % 2 else None
        await sender.ask({"op": "group_send", "class": "ledger", "id": room, "tag": tag,
                          "text": f"g{n}"}, "sent")  # fmt: skip
        await sender.ask({"op": "broadcast_to", "class": "ledger", "id": room, "tag": "all",
                          "text": f"b{n}"}, "ok")  # fmt: skip
        await sender.ask({"op": "group_send", "class": "ledger", "id": room,
                          "text": "no group", "without_group": True}, "sent")  # fmt: skip
    for n, (room, client) in enumerate(objects):
        # A handler's broadcast wakes the object and reaches its socket wherever held.
        assert (await client.ask({"op": "broadcast", "text": f"s{n}"}, "sent"))["sent"] == 1
        for text in (f"g{n}", f"b{n}", f"s{n}"):
            await client.wait_for(lambda m, text=text: m == text)
        # The same path as the messages above, after them: anything repeated is in by now.
        await sender.ask({"op": "group_send", "class": "ledger", "id": room, "text": "end"},
                         "sent")  # fmt: skip
        await client.wait_for(lambda m: m == "end")
        for text in (f"g{n}", f"b{n}", f"s{n}", "end"):
            assert client.messages.count(text) == 1, (text, client.messages)
        assert "no group" not in client.messages
    assert sum([(await process(m))["refused"] for m in monitors]) == refused + len(objects)


async def test_hibernated_objects_hold_no_task_in_memory(daphne_factory: DaphneFactory) -> None:
    (server,) = daphne_factory(1, env={"DURABLE_TEST_HIBERNATE_EAGERLY": "1"})
    c = Cluster([server], {}, "", "")
    try:
        monitor = await c.monitor(server)
        # The process channel and its reader exist once the first socket joined.
        first = await connect_objects(c, [server], 1)
        await all_hibernated([monitor])
        before = await process(monitor)
        objects = first + await connect_objects(c, [server], OBJECTS - 1)
        await all_hibernated([monitor])
        after = await process(monitor)
        assert after["sockets"] == OBJECTS
        # One task per socket (daphne's, for the connection) and nothing per object.
        assert after["tasks"] - before["tasks"] <= OBJECTS - 1, (before, after)
        assert after["tasks"] <= OBJECTS + CONSTANT, after
        await check_fanout(objects, monitor, [monitor])
    finally:
        await c.close()


async def test_hibernated_objects_hold_no_task_on_redis_two_processes(cluster) -> None:
    c = cluster(2, hibernate_eagerly="1")
    monitors = [await c.monitor(s) for s in c.servers]
    first = await connect_objects(c, c.servers, 2)
    await all_hibernated(monitors)
    before = [await process(m) for m in monitors]
    objects = first + await connect_objects(c, c.servers, OBJECTS - 2)
    await all_hibernated(monitors)
    after = [await process(m) for m in monitors]
    for b, a in zip(before, after, strict=True):
        assert a["tasks"] - b["tasks"] <= a["sockets"] - b["sockets"], (before, after)
        assert a["tasks"] <= a["sockets"] + CONSTANT, after
    assert sum(a["sockets"] for a in after) == OBJECTS

    # Sockets of one object on both processes: a broadcast from either side, or from
    # outside, reaches each of them once while the object is hibernated.
    room = oid()
    pair = [await c.client(s, f"/ws/ledger/{room}/?observe=1") for s in c.servers]
    for client in pair:
        await client.ask({"op": "where"}, "pid")
    await all_hibernated(monitors)
    await monitors[0].ask({"op": "group_send", "class": "ledger", "id": room, "text": "x"},
                          "sent")  # fmt: skip
    await monitors[1].ask({"op": "broadcast_to", "class": "ledger", "id": room, "text": "y"},
                          "ok")  # fmt: skip
    sent = await pair[0].ask({"op": "broadcast", "text": "z"}, "sent")
    assert sent["sent"] == 2
    for client in pair:
        await client.wait_for(lambda m: m == "z")
        for text in ("x", "y"):
            await client.wait_for(lambda m, text=text: m == text)
    for client in pair:
        for text in ("x", "y", "z"):
            assert client.messages.count(text) == 1, (text, client.messages)

    await check_fanout(objects, monitors[0], monitors)
