"""Many objects (SPEC §12): a hibernated object holds no task, channel or reader.

End to end, on real daphne processes with ``HIBERNATE_EAGERLY``: many objects with one
socket each (two tags, so three groups per object), all hibernated; then the server's
asyncio tasks are counted (no more than one per socket plus a constant), and tag
groups are reached from outside (``group_send`` with :func:`broadcast_event`,
``broadcast_to``) and from inside (``state.broadcast``): every socket gets each message
once. On the in-memory layers with one process, and on Redis with two. Sizes stay
modest: the cost at 10,000 objects is measured in ``bench/many_objects.py``.

In-process, on the in-memory layers: what a hibernated object still holds is its
session (its sockets' records) and its groups' entries in the fan-out, and nothing in
Channels' in-memory layer, which still reaches it through ``group_send``.
"""

from __future__ import annotations

import gc
import json
import weakref
from urllib.parse import urlencode

from channels.layers import InMemoryChannelLayer, get_channel_layer

from django_durable import broadcast_event
from django_durable.local_groups import serve
from django_durable.runtime import get_runtime
from django_durable.session.base import NOTHING_SET_ASIDE
from django_durable.session.memory import InMemorySessionLayer
from django_durable.testing import hibernate, live_object_ids
from tests.app.consumers import Probe
from tests.cluster_harness import WAIT, Client, Cluster, oid
from tests.daphne_server import DaphneFactory, DaphneServer
from tests.probe import ProbeObject
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


def tags_query(tags: list[str]) -> str:
    return urlencode({"tags": json.dumps(tags)})


async def test_a_hibernated_object_holds_its_sockets_entries_and_nothing_else() -> None:
    """In the session layer, one session with its socket's record (no set of its own
    for sockets set aside, no history); in the fan-out, one entry per group naming the
    socket; in Channels' in-memory layer, no entry. ``group_send`` reaches each
    socket once without waking its object."""
    objects = [ProbeObject() for _ in range(OBJECTS)]
    try:
        clients = [await obj.connect(tags_query(["red"])) for obj in objects]
        for obj in objects:
            await hibernate(Probe, obj.id)
        runtime = get_runtime()
        layer = runtime.layer
        assert isinstance(layer, InMemorySessionLayer)
        channel_layer = get_channel_layer()
        assert type(channel_layer) is InMemoryChannelLayer
        assert not live_object_ids(Probe) & {obj.id for obj in objects}
        for obj, client in zip(objects, clients, strict=True):
            key = Probe.object_key(obj.id)
            assert key not in runtime.dispatcher.live
            session = layer.sessions[key]
            assert list(session.sockets) == [client.id]
            assert session.set_aside is NOTHING_SET_ASIDE
            assert session.auto_response is None and session.event_timeout_ms is None
            assert key not in layer.histories
            for group in (Probe.tag_group(obj.id), Probe.tag_group(obj.id, "red")):
                assert runtime.fanout.groups[group] == client.id  # the id, not a set
                assert group not in runtime.fanout._lingering
                assert not dict.__contains__(channel_layer.groups, group)  # not stored
                assert group in channel_layer.groups  # yet answered for

        starts = [obj.starts for obj in objects]
        for n, obj in enumerate(objects):
            red = Probe.tag_group(obj.id, "red")
            await channel_layer.group_send(red, broadcast_event(red, f"r{n}"))
            every = Probe.tag_group(obj.id)
            await channel_layer.group_send(every, broadcast_event(every, f"a{n}"))
        for n, client in enumerate(clients):
            assert await client.receive_data() == f"r{n}"
            assert await client.receive_data() == f"a{n}"
            assert client.comm.output_queue.empty()
        assert [obj.starts for obj in objects] == starts  # none was woken
        assert not live_object_ids(Probe) & {obj.id for obj in objects}
    finally:
        for obj in objects:
            await obj.close()


async def test_a_channels_consumer_shares_a_durable_group_on_the_in_memory_layer() -> None:
    """A plain channel added to a tag group gets its messages along with the object's
    sockets, and keeps getting them once the object's last socket left."""
    obj = ProbeObject()
    try:
        a = await obj.connect(tags_query(["red"]))
        await hibernate(Probe, obj.id)
        layer = get_channel_layer()
        runtime = get_runtime()
        red = Probe.tag_group(obj.id, "red")
        other = await layer.new_channel()

        await layer.group_add(red, other)
        await layer.group_send(red, broadcast_event(red, "both"))
        assert await a.receive_data() == "both"
        assert (await layer.receive(other))["text"] == "both"

        await layer.group_discard(red, other)
        await layer.group_send(red, broadcast_event(red, "sockets only"))
        assert await a.receive_data() == "sockets only"
        assert other not in layer.channels  # nothing queued for it

        # Channels drops a channel from every stored entry when a message to it
        # expires unread; the hourly refresh names the process channel there again.
        await layer.group_add(red, other)
        dict.__getitem__(layer.groups, red).pop(runtime.fanout.channel)
        await runtime.fanout.resubscribe()
        await layer.group_send(red, broadcast_event(red, "both again"))
        assert await a.receive_data() == "both again"
        assert (await layer.receive(other))["text"] == "both again"
        await layer.group_discard(red, other)

        b = await obj.connect(tags_query(["blue"]))
        await layer.group_add(red, other)
        await a.disconnect()
        await wait_until(lambda: red not in runtime.fanout.groups, message="the group left")
        assert list(layer.groups[red]) == [other]  # the process channel left with it
        await layer.group_send(red, broadcast_event(red, "other only"))
        assert (await layer.receive(other))["text"] == "other only"
        assert b.comm.output_queue.empty()
        await layer.group_discard(red, other)
        assert red not in layer.groups

        class Subclass(InMemoryChannelLayer):
            pass

        # Another layer stores its groups its own way: joined with group_add there.
        assert serve(Subclass(), runtime.fanout) is None
    finally:
        await obj.close()


async def test_a_hibernated_live_object_is_freed_by_reference_counting() -> None:
    """Nothing of a live object waits for the cyclic garbage collector once it
    hibernated: a cycle left per wake sets off collections that walk every object of
    the process, every socket's included (they made waking 10,000 objects 2.7 times
    slower). Checked with the collector off: each live object is gone at once."""
    objects = [ProbeObject() for _ in range(3)]
    runtime = get_runtime()
    enabled = gc.isenabled()
    try:
        clients = [await obj.connect(tags_query(["red"])) for obj in objects]
        gc.collect()
        gc.disable()
        for obj, client in zip(objects, clients, strict=True):
            await client.run(lambda instance, ws: None)  # a handler ran: the instance exists
            live = runtime.dispatcher.live[Probe.object_key(obj.id)]
            assert live.instance is not None
            freed = weakref.ref(live)
            instance = weakref.ref(live.instance)
            del live
            await hibernate(Probe, obj.id)
            assert freed() is None, gc.get_referrers(freed())
            assert instance() is None
    finally:
        if enabled:
            gc.enable()
        for obj in objects:
            await obj.close()
