"""Hostile bytes written straight into the storage table, read by a real daphne (§11).

Before: a ~1 KB row of 200 nested tuples killed daphne with SIGSEGV at
``storage.get()``, and an 8 MiB integer was accepted on read. Now the call that reads
such a row gets a clear ``CorruptValue`` for that value alone, and the process, the
object and its other keys go on.
"""

from __future__ import annotations

import msgpack

from tests.app.storage_consumers import Safe
from tests.storage_support import STORAGE_TABLE, E2EDatabase, Peer, database_fixture, new_id

database = database_fixture()


def nested_tuples(levels: int) -> bytes:
    item = msgpack.ExtType(2, msgpack.packb([]))
    for _ in range(levels - 1):
        item = msgpack.ExtType(2, msgpack.packb([item]))
    return b"\x01" + msgpack.packb(item)


def write_row(database: E2EDatabase, object_key: str, key: str, value: bytes) -> None:
    sql = f"INSERT INTO {STORAGE_TABLE} (object_key, key, value) VALUES (%s, %s, %s)"
    if database.kind == "sqlite":
        sql = sql.replace("%s", "?")
    with database.connection() as conn:
        conn.execute(sql, (object_key, key.encode(), value))


async def test_a_hostile_storage_row_is_a_clear_error_and_daphne_goes_on(
    daphne_factory, database: E2EDatabase
) -> None:
    server = daphne_factory(1, database.env)[0]
    oid = new_id()
    key = f"{Safe.durable_name}/{oid}"
    hostile = {
        "deep": nested_tuples(250),  # about 1.2 KB
        "bigint": b"\x01" + msgpack.packb(msgpack.ExtType(1, b"\x7f" * (8 * 1024 * 1024))),
        "junk": b"\x01\xdd\xff\xff\xff\xff",
    }
    assert 1_000 < len(hostile["deep"]) < 1_400
    for name, value in hostile.items():
        write_row(database, key, name, value)

    peer = await Peer.open(server, f"/ws/safe/{oid}/")
    assert (await peer.ask({"op": "put", "key": "fine", "value": [1, (2, 3)]}))["ok"] is True
    for name in hostile:
        reply = await peer.ask({"op": "get", "key": name})
        assert reply["error"] == "CorruptValue", reply
        assert "not a django-durable encoding" in reply["message"]
    # The same process, the same object, its other keys: all still there.
    assert server.running
    assert (await peer.ask({"op": "get", "key": "fine"}))["value"] == [1, [2, 3]]
    assert "Segmentation fault" not in server.output()
    await peer.ws.close()
