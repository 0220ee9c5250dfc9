"""``accept_websocket(ws, tags, subprotocol)`` (SPEC §3), end to end.

Before: the server never selected a subprotocol and there was no way to. Now the one
``connect()`` chooses among those the client offered is sent in the handshake
(``Sec-WebSocket-Protocol``), also when the connection is held by another process than
the object's owner (the verdict carries it); one the client did not offer is a
``ValueError`` that registers nothing.
"""

from __future__ import annotations

import json

from websockets.asyncio.client import connect

from tests.cluster_harness import oid
from tests.daphne_server import DaphneServer, recv_json

TIMEOUT = 10


async def _chosen(server: DaphneServer, room: str, query: str = "") -> tuple[str | None, dict]:
    url = server.url(f"/ws/room/{room}/?subprotocol=chat.v1&greet=1{query}")
    async with connect(url, subprotocols=["chat.v1", "chat.v0"], open_timeout=TIMEOUT) as ws:
        greeting = await recv_json(ws, TIMEOUT)
        await ws.send(json.dumps({"op": "whoami"}))
        await recv_json(ws, TIMEOUT)
        return ws.subprotocol, greeting


async def test_the_chosen_subprotocol_is_sent_in_the_handshake(daphne_server) -> None:
    subprotocol, greeting = await _chosen(daphne_server, oid())
    assert subprotocol == "chat.v1"
    assert "hello" in greeting  # sent from connect(), after the accept it carries


async def test_a_subprotocol_the_client_did_not_offer_is_a_value_error(daphne_server) -> None:
    url = daphne_server.url(f"/ws/room/{oid()}/?subprotocol=chat.v9")
    async with connect(url, subprotocols=["chat.v1"], open_timeout=TIMEOUT) as ws:
        refused = await recv_json(ws, TIMEOUT)
        assert refused["refused"] == "InvalidSubprotocol"
        assert "'chat.v9' was not offered" in refused["message"]
        assert ws.subprotocol is None  # accepted plainly afterwards: nothing was left
    # A client that offered none cannot be given one either.
    url = daphne_server.url(f"/ws/room/{oid()}/?subprotocol=chat.v1")
    async with connect(url, open_timeout=TIMEOUT) as ws:
        assert (await recv_json(ws, TIMEOUT))["refused"] == "InvalidSubprotocol"


async def test_the_subprotocol_reaches_a_connection_held_by_another_process(
    cluster,
) -> None:
    c = cluster(2)
    room = oid()
    # The object wakes on server 0 (and stays: IDLE_TIMEOUT is 10 s) ...
    owner = await c.client(c.servers[0], f"/ws/room/{room}/?greet=1")
    hello = json.loads(await owner.wait_for(lambda m: "hello" in str(m)))
    assert hello["hello"]
    # ... so a connection to server 1 is decided there, and its accept comes back.
    subprotocol, greeting = await _chosen(c.servers[1], room)
    assert subprotocol == "chat.v1"
    assert "hello" in greeting
