"""Stubs end to end: ``Cls.get(id).method(...)`` from views and management commands.

On SQLite and on PostgreSQL, each with the in-memory session layer (one server) and
with Redis (two servers: objects' sockets on A, views called on B, so every call from
B crosses to the owner A). Objects are ``tests.app.storage_consumers.Safe`` (@rpc
``read``/``write``/``pid``/``starts``/``echo``/``fail``, non-rpc ``private``) and
``Vault`` (the lead's sync view and ``vault`` command). Servers hibernate objects
after 0.3 s idle, so calls also wake hibernated objects.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from django_durable import rpc
from django_durable.exceptions import RPCNotAllowed, UnsupportedValue
from django_durable.stubs import DurableStub
from tests.app.storage_consumers import ROUNDTRIP_VALUE, Safe, StorageMonitor
from tests.daphne_server import DaphneServer, start_servers
from tests.storage_support import (
    E2EDatabase,
    Peer,
    database_fixture,
    http_json,
    new_id,
    object_key,
    redis_env,
    run_command,
)
from tests.waiting import wait_until

IDLE_TIMEOUT = "0.3"

database = database_fixture()


@dataclass
class Setup:
    """``a`` holds the objects' sockets; ``b`` serves the views (``a`` itself in memory)."""

    layer: str
    a: DaphneServer
    b: DaphneServer
    env: dict[str, str]
    peers: list[Peer] = field(default_factory=list)

    @property
    def servers(self) -> list[DaphneServer]:
        return [self.a] if self.a is self.b else [self.a, self.b]

    async def call(self, oid: str, method: str, *args: Any) -> tuple[int, Any]:
        query = urllib.parse.urlencode({"args": json.dumps(list(args))})
        return await http_json(self.b.http_url(f"/safe/{oid}/call/{method}/?{query}"))

    async def monitor(self, server: DaphneServer, **question: Any) -> Any:
        peer = await Peer.open(server, "/ws/storage-monitor/")
        try:
            return await peer.ask(question)
        finally:
            await peer.close()

    async def command(self, *args: str) -> dict[str, Any]:
        return await run_command(self.env, *args)


@pytest.fixture(scope="module", params=["memory", "redis"])
def setup(request: pytest.FixtureRequest, database: E2EDatabase) -> Iterator[Setup]:
    count = 2 if request.param == "redis" else 1
    # (Management commands are further processes on the database.)
    env = {**database.env_for(2), "DURABLE_TEST_IDLE_TIMEOUT": IDLE_TIMEOUT}
    if request.param == "redis":
        env.update(redis_env())
    servers = start_servers(count, env, first_index=80)
    try:
        yield Setup(request.param, servers[0], servers[-1], env)
    finally:
        for server in servers:
            server.close()


@pytest.fixture
async def stubs(report_server_output, setup: Setup) -> Any:
    """This test's view of the module's servers; closes the test's sockets after it."""
    report_server_output(*setup.servers)
    setup.peers = []
    yield setup
    for peer in setup.peers:
        await peer.close()


async def safe_with(setup: Setup, **entries: Any) -> str:
    """A new Safe object whose socket is on A, holding ``entries``; returns its id."""
    oid = new_id()
    peer = await Peer.open(setup.a, f"/ws/safe/{oid}/")
    for key, value in entries.items():
        assert (await peer.ask({"op": "put", "key": key, "value": value}))["ok"] is True
    setup.peers.append(peer)
    return oid


# Views and commands reach the object ----------------------------------------------------------


async def test_a_sync_view_calls_through_async_to_sync(stubs: Setup) -> None:
    oid = new_id()
    peer = await Peer.open(stubs.a, f"/ws/vault/{oid}/")
    await peer.send(json.dumps({"op": "put", "key": "k", "value": [1, "two", {"3": 4}]}))
    assert await peer.wait(lambda m: m.get("ok")) == {"ok": True}
    status, body = await http_json(stubs.b.http_url(f"/vault/{oid}/read/k/"))
    assert (status, body) == (200, {"value": [1, "two", {"3": 4}]})
    status, body = await http_json(stubs.b.http_url(f"/vault/{oid}/read/missing/"))
    assert (status, body) == (200, {"value": None})
    await peer.close()


async def test_an_async_view_calls_the_object_where_it_lives(stubs: Setup) -> None:
    oid = await safe_with(stubs, greeting="hello")
    assert await stubs.call(oid, "read", "greeting") == (
        200,
        {"result": "hello", "pid": stubs.b.pid},
    )
    status, body = await stubs.call(oid, "pid")
    assert status == 200 and body["result"] == stubs.a.pid  # with Redis: B reached A
    assert await stubs.call(oid, "write", "k2", {"n": 2}) == (
        200,
        {"result": True, "pid": stubs.b.pid},
    )
    assert (await stubs.call(oid, "read", "k2"))[1]["result"] == {"n": 2}


async def test_a_stub_call_wakes_a_hibernated_object(stubs: Setup) -> None:
    oid = await safe_with(stubs, k="v")
    starts = (await stubs.monitor(stubs.a, op="starts", id=oid))["starts"]
    await wait_until(lambda: _not_live(stubs, oid), message="the object hibernated", interval=0.05)
    assert (await stubs.call(oid, "read", "k"))[1]["result"] == "v"
    assert (await stubs.monitor(stubs.a, op="starts", id=oid))["starts"] == starts + 1


async def _not_live(stubs: Setup, oid: str) -> bool:
    return not (await stubs.monitor(stubs.a, op="live", id=oid))["live"]


async def test_a_management_command_reaches_the_object(stubs: Setup) -> None:
    oid = await safe_with(stubs, k={"from": "daphne"})
    read = await stubs.command("safe", oid, "read", '"k"')
    assert read["result"] == {"from": "daphne"}
    out = await stubs.command("safe", oid, "pid")
    ran_in = out["result"]
    if stubs.layer == "memory":
        # No shared session layer: the command runs an instance of its own, in its own
        # process, over the shared database.
        assert ran_in == out["pid"] and ran_in not in (stubs.a.pid, stubs.b.pid)
    else:
        assert ran_in == stubs.a.pid, "with Redis the command reaches the daphne owner"
    # A write from the command is seen by the daphne side.
    assert (await stubs.command("safe", oid, "write", '"k"', '"from the command"'))["result"]
    assert (await stubs.call(oid, "read", "k"))[1]["result"] == "from the command"
    # The lead's command too.
    assert (await stubs.command("vault", new_id(), "read", '"nothing"'))["result"] is None


# Refusals and errors ---------------------------------------------------------------------------


REFUSED = ["private", "on_start", "alarm", "websocket_message", "connect", "run", "state"]


@pytest.mark.parametrize("name", REFUSED)
async def test_a_method_that_is_not_rpc_is_refused_and_nothing_runs(
    stubs: Setup, database: E2EDatabase, name: str
) -> None:
    oid = new_id()  # never created: a refused call must not create it either
    status, body = await stubs.call(oid, name)
    assert status == 500
    assert body["error"] == "RPCNotAllowed"
    assert f"Safe.{name} is not an @rpc method" in body["message"]
    for server in stubs.servers:
        assert (await stubs.monitor(server, op="starts", id=oid))["starts"] == 0
    assert database.storage(object_key(Safe, oid)) == {}


async def test_a_refused_method_from_a_command_raises_rpc_not_allowed(
    stubs: Setup, database: E2EDatabase
) -> None:
    oid = await safe_with(stubs)
    out = await stubs.command("safe", oid, "private")
    assert out["error"] == "RPCNotAllowed" and "private" in out["message"]
    assert "private_ran" not in database.storage(object_key(Safe, oid))


@pytest.mark.parametrize("name", [*REFUSED, "_private", "reentrant", "durable_name"])
async def test_a_refused_call_raises_rpc_not_allowed_a_permission_error_in_process(
    name: str,
) -> None:
    # Refused in the caller before anything is encoded or sent: no server, no database.
    with pytest.raises(RPCNotAllowed) as caught:
        await getattr(Safe.get("x"), name)()
    assert isinstance(caught.value, PermissionError)
    assert name in str(caught.value) and "@rpc" in str(caught.value)


@pytest.mark.parametrize(
    ("kind", "error"),
    [("KeyError", "KeyError"), ("ValueError", "ValueError"), ("custom", None)],
)
async def test_an_exception_in_the_method_reaches_the_caller(
    stubs: Setup, kind: str, error: str | None
) -> None:
    oid = await safe_with(stubs)
    status, body = await stubs.call(oid, "fail", kind)
    assert status == 500
    if error is not None:
        assert body["error"] == error
    elif stubs.layer == "memory":
        assert body["error"] == "PlannedFailure"  # the very exception, in one process
    else:
        # A class the caller cannot rebuild crosses as RPCError naming it.
        assert body["error"] == "RPCError"
        assert "tests.app.storage_consumers.PlannedFailure" in body["message"]
    message = {"KeyError": "no such thing", "ValueError": "bad value", "custom": "planned failure"}
    assert message[kind] in body["message"]
    # The object is fine afterwards.
    assert (await stubs.call(oid, "pid"))[0] == 200


async def test_a_key_error_crosses_to_a_command_as_a_key_error(stubs: Setup) -> None:
    oid = await safe_with(stubs)
    out = await stubs.command("safe", oid, "fail", '"KeyError"')
    assert out["error"] == "KeyError" and "no such thing" in out["message"]


# broadcast_to -----------------------------------------------------------------------------------


async def test_broadcast_to_reaches_sockets_without_waking_the_object(stubs: Setup) -> None:
    oid = new_id()
    peer = await Peer.open(stubs.a, f"/ws/vault/{oid}/")
    await peer.send(json.dumps({"op": "starts"}))
    assert (await peer.wait(lambda m: "starts" in m))["starts"] == 1
    await wait_until(
        lambda: _vault_not_live(stubs, oid), message="the object hibernated", interval=0.05
    )

    status, _ = await http_json(stubs.b.http_url(f"/vault/{oid}/broadcast/?text=hello"))
    assert status == 200
    await peer.wait(lambda m: m == "hello")
    for server in stubs.servers:
        answer = await stubs.monitor(server, op="live", id=oid, **{"class": "vault"})
        assert answer["live"] is False
    starts = await stubs.monitor(stubs.a, op="starts", id=oid, **{"class": "vault"})
    assert starts["starts"] == 1, "broadcast_to ran on_start"
    # After the fact, through the STARTS counter rpc: this call is the second start.
    status, body = await http_json(stubs.b.http_url(f"/vault/{oid}/call/starts/"))
    assert (status, body) == (200, {"result": 2})
    await peer.close()


async def _vault_not_live(stubs: Setup, oid: str) -> bool:
    answer = await stubs.monitor(stubs.a, op="live", id=oid, **{"class": "vault"})
    return not answer["live"]


# Encoding -------------------------------------------------------------------------------------


async def test_arguments_and_results_use_the_attachment_encoding(stubs: Setup) -> None:
    oid = await safe_with(stubs)
    status, body = await http_json(stubs.b.http_url(f"/safe/{oid}/roundtrip/"))
    assert status == 200, body
    sent = [type(v).__name__ for v in ROUNDTRIP_VALUE]
    assert body["types_sent"] == sent
    assert body["types_seen"] == sent, "the method saw other types than were sent"
    assert body["types_returned"] == sent
    assert body["nested_types"] == sent
    assert body["result_type"] == "tuple"
    assert body["equal"] is True


async def test_a_command_round_trips_the_encoding_too(stubs: Setup) -> None:
    oid = await safe_with(stubs)
    out = await stubs.command("safe", oid, "--roundtrip")
    sent = [type(v).__name__ for v in ROUNDTRIP_VALUE]
    assert out.get("error") is None, out
    assert out["types_seen"] == sent and out["types_returned"] == sent
    assert out["equal"] is True


async def test_a_value_the_encoding_cannot_carry_is_refused_in_the_caller() -> None:
    with pytest.raises(UnsupportedValue) as caught:
        await Safe.get("x").echo(object())
    assert "object" in str(caught.value)


# Misuse -----------------------------------------------------------------------------------------


class NotDurable:
    @rpc
    async def hello(self) -> str:
        return "hi"


@pytest.mark.parametrize("cls", [StorageMonitor, NotDurable, object], ids=lambda c: c.__name__)
async def test_a_stub_for_a_class_that_is_not_a_durable_consumer_is_a_clear_error(cls) -> None:
    with pytest.raises(TypeError) as caught:
        await DurableStub(cls, "x").hello()
    message = str(caught.value)
    assert "DurableConsumer" in message and cls.__name__ in message


async def test_a_stub_for_a_class_that_is_not_durable_fails_clearly_in_a_view(
    stubs: Setup,
) -> None:
    status, body = await http_json(stubs.b.http_url("/safe/not-durable/"))
    assert status == 500 and body["error"] == "TypeError", body
    assert "DurableConsumer" in body["message"]


# A forged call: the owner checks @rpc too --------------------------------------------------------


async def test_the_owner_refuses_a_non_rpc_call_that_skipped_the_caller_s_check(
    stubs: Setup, database: E2EDatabase
) -> None:
    """A ``durable.call`` message sent straight to the owner's process channel, naming a
    method that is not @rpc: refused there too, and nothing runs (not even on_start)."""
    if stubs.layer != "redis":
        pytest.skip("only processes with a Redis channel layer take calls from others")
    import redis.asyncio as aioredis
    from channels_redis.core import RedisChannelLayer

    from django_durable.encoding import encode
    from django_durable.session.redis import unpack_record

    oid = await safe_with(stubs)
    await wait_until(lambda: _not_live(stubs, oid), message="the object hibernated", interval=0.05)
    starts = (await stubs.monitor(stubs.a, op="starts", id=oid))["starts"]
    prefix = stubs.env["DURABLE_TEST_REDIS_PREFIX"]
    url = stubs.env["DURABLE_TEST_REDIS_URL"]
    layer = RedisChannelLayer(hosts=[{"address": url}], prefix=f"{prefix}:asgi")
    redis_key = f"{prefix}:durable:s:{object_key(Safe, oid)}"
    client = aioredis.Redis.from_url(url)
    try:
        (record,) = [unpack_record("", v) for v in (await client.hvals(redis_key))]
    finally:
        await client.aclose()
    call_id = uuid.uuid4().hex
    try:
        reply_to = await layer.new_channel("forger")
        await layer.send(
            record.holder,
            {
                "type": "durable.call",
                "cls": Safe.durable_name,
                "oid": oid,
                "name": "private",
                "payload": encode([[], {}]),
                "reply_to": reply_to,
                "call_id": call_id,
                "hops": 0,
            },
        )
        async with asyncio.timeout(10):
            reply = await layer.receive(reply_to)
    finally:
        await layer.close_pools()
    assert reply["call_id"] == call_id and reply["ok"] is False
    assert reply["error"][1] == "RPCNotAllowed"
    assert "private_ran" not in database.storage(object_key(Safe, oid))
    starts_after = (await stubs.monitor(stubs.a, op="starts", id=oid))["starts"]
    assert starts_after == starts, "a refused call woke the object"
