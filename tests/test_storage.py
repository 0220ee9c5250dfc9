"""``DurableStorage``: every call, every limit at its edge, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import decimal
import itertools
import random
import uuid

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from django_durable.dbthread import run_db
from django_durable.encoding import encoded_size
from django_durable.exceptions import (
    InvalidStorageKey,
    InvalidStorageValue,
    OwnershipLost,
    UnsupportedValue,
)
from django_durable.models import OBJECT_KEY_MAX_LENGTH, Alarm, ObjectFence, StorageEntry
from django_durable.runtime import existing_runtime
from django_durable.storage import KEY_MAX_BYTES, VALUE_MAX_BYTES, DurableStorage
from tests.databases import DATABASES, TRANSACTIONAL
from tests.services import need

pytestmark = TRANSACTIONAL

OBJECT = "tests.Room:lobby"


@pytest.fixture(params=DATABASES)
def alias(request) -> str:
    if request.param == "postgres":
        need("postgres")
    return request.param


@pytest.fixture(autouse=True)
async def _close_worker_connections():
    """Storage runs the ORM in the package's database thread, and setting an alarm starts
    this loop's alarm poller there: stop the poller, then close that thread's connections
    after each test. A poll still in flight keeps SQLite's shared in-memory table locked
    against the test's flush, and PostgreSQL cannot drop a test database that a
    connection still uses. (The one database thread runs calls in order, so the close
    runs after any poll already submitted.)"""
    yield
    runtime = existing_runtime()
    poller = runtime.alarms.task if runtime is not None else None
    if poller is not None:
        poller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await poller
    await run_db(connections.close_all)
    await sync_to_async(connections.close_all)()


@pytest.fixture
def storage(alias) -> DurableStorage:
    return DurableStorage(OBJECT, using=alias)


def rows(alias: str, object_key: str = OBJECT) -> dict[str, bytes]:
    """What the table holds for an object, read straight from the ORM."""
    entries = StorageEntry.objects.using(alias).filter(object_key=object_key)
    return {bytes(k).decode(): bytes(v) for k, v in entries.values_list("key", "value")}


async def stored(alias: str, object_key: str = OBJECT) -> dict[str, bytes]:
    return await sync_to_async(rows)(alias, object_key)


# get / put / delete ---------------------------------------------------------------------


async def test_get_of_a_missing_key_is_none(storage):
    assert await storage.get("nope") is None


async def test_put_then_get_round_trips_every_type(storage):
    value = {
        "t": (1, "a"),
        "s": {1, 2},
        "f": frozenset({"x"}),
        "b": b"\x00\xff",
        "when": datetime.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=datetime.UTC),
        "d": decimal.Decimal("1.10"),
        "u": uuid.UUID(int=5),
        "big": 2**100,
        "none": None,
    }
    await storage.put("k", value)
    got = await storage.get("k")
    assert got == value
    assert type(got["t"]) is tuple
    assert type(got["f"]) is frozenset


async def test_put_replaces_and_get_returns_a_fresh_copy(storage):
    await storage.put("k", [1])
    await storage.put("k", [2])
    first = await storage.get("k")
    first.append(3)
    assert await storage.get("k") == [2]


async def test_get_many_returns_found_keys_sorted(storage):
    await storage.put({"b": 2, "a": 1, "c": 3})
    result = await storage.get(["c", "missing", "a", "a"])
    assert result == {"a": 1, "c": 3}
    assert list(result) == ["a", "c"]
    assert await storage.get([]) == {}
    assert await storage.get(("b",)) == {"b": 2}


async def test_put_many_writes_every_entry(storage, alias):
    await storage.put({"x": 1, "y": "two"})
    assert await storage.get(["x", "y"]) == {"x": 1, "y": "two"}
    await storage.put({})  # nothing to do
    assert set(await stored(alias)) == {"x", "y"}


async def test_put_arguments_are_checked(storage):
    with pytest.raises(TypeError):
        await storage.put("k")
    with pytest.raises(TypeError):
        await storage.put({"k": 1}, 2)
    with pytest.raises(InvalidStorageKey):
        await storage.put(5, "v")


async def test_delete_one_reports_whether_it_existed(storage):
    await storage.put("k", 1)
    assert await storage.delete("k") is True
    assert await storage.delete("k") is False
    assert await storage.get("k") is None


async def test_delete_many_counts_what_existed(storage):
    await storage.put({"a": 1, "b": 2, "c": 3})
    assert await storage.delete(["a", "c", "zzz", "a"]) == 2
    assert await storage.delete([]) == 0
    assert await storage.list() == {"b": 2}


async def test_many_keys_beyond_one_sql_statement(storage):
    entries = {f"k{i:05}": i for i in range(1_200)}
    await storage.put(entries)
    assert await storage.get(list(entries)) == entries
    assert len(await storage.list()) == 1_200
    assert await storage.delete(list(entries)[:1_100]) == 1_100
    assert len(await storage.list()) == 100


async def test_objects_do_not_see_each_other(alias):
    a = DurableStorage("tests.Room:a", using=alias)
    b = DurableStorage("tests.Room:b", using=alias)
    await a.put("k", "a")
    await b.put("k", "b")
    assert await a.get("k") == "a"
    assert await b.list() == {"k": "b"}
    await a.delete_all()
    assert await b.get("k") == "b"


async def test_using_defaults_to_the_database_setting(settings):
    settings.DURABLE_OBJECTS = {"DATABASE": "postgres"}
    assert DurableStorage(OBJECT).using == "postgres"
    settings.DURABLE_OBJECTS = {}
    assert DurableStorage(OBJECT).using == "default"


# Limits ------------------------------------------------------------------------------------

KEYS_AT_LIMIT = [
    "k" * KEY_MAX_BYTES,  # 1-byte characters
    "é" * (KEY_MAX_BYTES // 2),  # 2-byte
    "€" * (KEY_MAX_BYTES // 3) + "ab",  # 3-byte, topped up
    "🎉" * (KEY_MAX_BYTES // 4),  # 4-byte
]


@pytest.mark.parametrize("key", KEYS_AT_LIMIT, ids=["ascii", "2-byte", "3-byte", "4-byte"])
async def test_a_key_of_exactly_2048_bytes_is_accepted_and_one_more_byte_is_not(storage, key):
    assert len(key.encode()) == KEY_MAX_BYTES
    await storage.put(key, "v")
    assert await storage.get(key) == "v"
    assert await storage.list() == {key: "v"}
    over = key + "x"
    with pytest.raises(InvalidStorageKey, match=r"2,049 bytes.*2,048") as info:
        await storage.put(over, "v")
    assert isinstance(info.value, ValueError)
    for call in (storage.get(over), storage.delete(over), storage.get([over])):
        with pytest.raises(InvalidStorageKey):
            await call
    assert await storage.list() == {key: "v"}


async def test_a_multibyte_character_that_crosses_the_limit_is_refused(storage):
    key = "k" * (KEY_MAX_BYTES - 1) + "é"  # 2,047 + 2 bytes
    with pytest.raises(InvalidStorageKey, match="2,049 bytes"):
        await storage.put(key, 1)


@pytest.mark.parametrize("key", [b"bytes", 1, None, ("t",)], ids=repr)
async def test_a_key_that_is_not_a_str_is_refused(storage, key):
    with pytest.raises(InvalidStorageKey, match="must be a str"):
        await storage.put(key, 1)


async def test_a_key_with_a_lone_surrogate_is_refused(storage):
    with pytest.raises(InvalidStorageKey, match="Unicode"):
        await storage.put("a\ud800", 1)


async def test_the_empty_key_and_nul_are_keys_like_any_other(storage):
    await storage.put({"": "empty", "\x00": "nul", "a\x00b": "inner"})
    assert await storage.list() == {"": "empty", "\x00": "nul", "a\x00b": "inner"}


def value_of_encoded_size(size: int) -> bytes:
    # Past 65,535 bytes the bin header is a constant 5 bytes (plus the version byte).
    overhead = encoded_size(b"x" * 70_000) - 70_000
    value = b"x" * (size - overhead)
    assert encoded_size(value) == size
    return value


async def test_a_value_of_exactly_128_kib_encoded_is_accepted_and_one_byte_more_is_not(
    storage,
):
    at_limit = value_of_encoded_size(VALUE_MAX_BYTES)
    await storage.put("k", at_limit)
    assert await storage.get("k") == at_limit
    with pytest.raises(InvalidStorageValue, match=r"131,073 bytes.*131,072") as info:
        await storage.put("k", value_of_encoded_size(VALUE_MAX_BYTES + 1))
    assert isinstance(info.value, ValueError)
    assert await storage.get("k") == at_limit


async def test_none_is_not_a_value_but_may_be_inside_one(storage):
    with pytest.raises(InvalidStorageValue, match="None"):
        await storage.put("k", None)
    with pytest.raises(InvalidStorageValue):
        await storage.put({"k": None})
    await storage.put("k", [None, {"x": None}])
    assert await storage.get("k") == [None, {"x": None}]


async def test_an_unencodable_value_is_refused(storage):
    with pytest.raises(UnsupportedValue, match="object"):
        await storage.put("k", object())


@pytest.mark.parametrize(
    "bad",
    [
        {"ok2": 2, "bad": None},
        {"ok2": 2, "bad": b"x" * VALUE_MAX_BYTES},
        {"ok2": 2, "bad": object()},
        {"ok2": 2, "k" * (KEY_MAX_BYTES + 1): 1},
        {"ok2": 2, 7: 1},
    ],
    ids=["none", "too-large", "unencodable", "key-too-long", "key-not-str"],
)
async def test_put_many_with_one_bad_entry_writes_nothing(storage, alias, bad):
    await storage.put("ok1", "before")
    snapshot = await stored(alias)
    with pytest.raises((InvalidStorageKey, InvalidStorageValue, UnsupportedValue)):
        await storage.put({"ok1": "after", **bad})
    assert await stored(alias) == snapshot


# Ordering and list() -------------------------------------------------------------------

MIXED_KEYS = [
    "",
    "\x00",
    "\x01",
    " ",
    "0",
    "9",
    "A",
    "Z",
    "_",
    "a",
    "aa",
    "a\x00",
    "ab",
    "b",
    "z",
    "~",
    "\x7f",
    "é",
    "É",
    "e\u0301",  # e + combining acute: sorts by code point, not as "é"
    "ß",
    "ÿ",
    "Ā",
    "€",
    "中",
    "\uffff",
    "𐍈",
    "😀",
    "🎉",
    "\U0010ffff",
]


async def test_keys_sort_by_code_point_like_python(storage):
    shuffled = MIXED_KEYS[::2] + MIXED_KEYS[1::2]
    await storage.put({k: i for i, k in enumerate(shuffled)})
    expected = sorted(MIXED_KEYS)
    assert list(await storage.list()) == expected
    assert list(await storage.list(reverse=True)) == expected[::-1]
    assert list(await storage.get(MIXED_KEYS)) == expected


LIST_DATA = {
    k: k.upper()
    for k in ["a", "a/1", "a/2", "a/10", "b", "b/1", "b/2", "b/3", "bb", "c", "é", "é/1", "😀"]
}


def reference_list(data, prefix=None, start=None, end=None, reverse=False, limit=None):
    keys = sorted(data)
    if prefix is not None:
        keys = [k for k in keys if k.startswith(prefix)]
    if start is not None:
        keys = [k for k in keys if k >= start]
    if end is not None:
        keys = [k for k in keys if k < end]
    if reverse:
        keys.reverse()
    if limit is not None:
        keys = keys[:limit]
    return [(k, data[k]) for k in keys]


LIST_OPTIONS = list(
    itertools.product(
        [None, "", "a", "a/", "b/", "é", "zz"],  # prefix
        [None, "a/10", "b", "é"],  # start
        [None, "b/2", "c", "a"],  # end
        [False, True],  # reverse
        [None, 1, 2, 100],  # limit
    )
)


async def test_list_matches_the_reference_for_every_combination_of_options(storage):
    await storage.put(LIST_DATA)
    for prefix, start, end, reverse, limit in LIST_OPTIONS:
        options = {"prefix": prefix, "start": start, "end": end, "reverse": reverse}
        got = await storage.list(**options, limit=limit)
        assert list(got.items()) == reference_list(LIST_DATA, **options, limit=limit), (
            options,
            limit,
        )


async def test_list_bounds_start_inclusive_end_exclusive(storage):
    await storage.put({"a": 1, "b": 2, "c": 3})
    assert await storage.list(start="b") == {"b": 2, "c": 3}
    assert await storage.list(end="b") == {"a": 1}
    assert await storage.list(start="b", end="b") == {}
    assert await storage.list(start="c", end="a") == {}
    assert await storage.list(prefix="b", reverse=True, limit=1) == {"b": 2}


async def test_list_of_an_empty_object_is_empty(storage):
    assert await storage.list() == {}
    assert await storage.list(prefix="x", reverse=True, limit=3) == {}


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"limit": 0}, ValueError),
        ({"limit": -1}, ValueError),
        ({"limit": 1.5}, TypeError),
        ({"limit": True}, TypeError),
        ({"prefix": 1}, InvalidStorageKey),
        ({"start": b"a"}, InvalidStorageKey),
        ({"end": 3}, InvalidStorageKey),
    ],
    ids=repr,
)
async def test_list_options_are_checked(storage, options, error):
    with pytest.raises(error):
        await storage.list(**options)


# Transactions -----------------------------------------------------------------------------


async def test_transaction_commits_every_write_at_exit(storage, alias):
    await storage.put({"keep": 1, "drop": 2})
    async with storage.transaction() as txn:
        await txn.put("new", "n")
        await txn.put({"keep": 10, "other": 3})
        assert await txn.delete("drop") is True
        assert set(await stored(alias)) == {"keep", "drop"}  # nothing written yet
        assert await storage.get("new") is None
    assert await storage.list() == {"keep": 10, "new": "n", "other": 3}


async def test_transaction_reads_its_own_writes(storage):
    await storage.put({"a": 1, "b": 2})
    async with storage.transaction() as txn:
        await txn.put("c", 3)
        await txn.delete("a")
        assert await txn.get("c") == 3
        assert await txn.get("a") is None
        assert await txn.get(["a", "b", "c"]) == {"b": 2, "c": 3}
        assert await txn.list() == {"b": 2, "c": 3}
        assert await txn.delete("a") is False  # already deleted in this transaction
        assert await txn.delete(["b", "c", "zz"]) == 2
        assert await txn.list() == {}
        await txn.put("a", "again")
        assert await txn.get("a") == "again"
    assert await storage.list() == {"a": "again"}


async def test_an_exception_undoes_every_write(storage, alias):
    await storage.put("k", "before")
    with pytest.raises(KeyError):
        async with storage.transaction() as txn:
            await txn.put("k", "after")
            await txn.put("new", 1)
            await txn.delete("k")
            raise KeyError("boom")
    assert await storage.list() == {"k": "before"}
    assert set(await stored(alias)) == {"k"}


async def test_rollback_undoes_every_write_and_ends_the_transaction(storage):
    await storage.put("k", "before")
    async with storage.transaction() as txn:
        await txn.put("k", "after")
        await txn.delete("k")
        txn.rollback()
        with pytest.raises(RuntimeError, match="rolled back"):
            await txn.put("x", 1)
        with pytest.raises(RuntimeError, match="rolled back"):
            await txn.get("k")
    assert await storage.list() == {"k": "before"}


async def test_a_transaction_cannot_be_used_after_its_block(storage):
    async with storage.transaction() as txn:
        await txn.put("k", 1)
    with pytest.raises(RuntimeError, match="ended"):
        await txn.put("k", 2)
    assert await storage.get("k") == 1


async def test_an_invalid_write_in_a_transaction_raises_at_the_call(storage):
    async with storage.transaction() as txn:
        with pytest.raises(InvalidStorageValue):
            await txn.put({"ok": 1, "bad": None})
        await txn.put("fine", 1)
    assert await storage.list() == {"fine": 1}


async def test_a_transaction_with_no_writes_makes_no_write_call(alias):
    calls = []

    @contextlib.asynccontextmanager
    async def gate():
        calls.append("call")
        yield

    storage = DurableStorage(OBJECT, using=alias, gate=gate)
    await storage.put("k", 1)
    async with storage.transaction() as txn:
        assert await txn.get("k") == 1
    assert calls == ["call", "call"]  # the put and the read; no commit
    async with storage.transaction() as txn:
        await txn.put("k", 2)
        txn.rollback()
    assert calls == ["call", "call"]
    assert await storage.list() == {"k": 1}


async def test_transaction_list_with_limits_matches_the_reference(storage):
    base = {f"k{i}": i for i in range(10)}
    await storage.put(base)
    async with storage.transaction() as txn:
        await txn.delete(["k0", "k1", "k2", "k8"])
        await txn.put({"k1": "back", "k45": 45, "j": "first", "z": "last"})
        view = {k: v for k, v in base.items() if k not in {"k0", "k2", "k8"}}
        view.update({"k1": "back", "k45": 45, "j": "first", "z": "last"})
        for prefix, start, end, reverse, limit in itertools.product(
            [None, "k"], [None, "k1"], [None, "k5"], [False, True], [None, 1, 2, 3, 5]
        ):
            options = {"prefix": prefix, "start": start, "end": end, "reverse": reverse}
            got = await txn.list(**options, limit=limit)
            assert list(got.items()) == reference_list(view, **options, limit=limit), options
    assert await storage.list() == view


# delete_all ---------------------------------------------------------------------------------


async def test_delete_all_removes_every_key_and_the_alarm(storage, alias):
    await storage.put({"a": 1, "b": 2})
    await storage.set_alarm(datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC))
    await storage.delete_all()
    assert await storage.list() == {}
    assert await storage.get_alarm() is None
    assert not await sync_to_async(Alarm.objects.using(alias).filter(object_key=OBJECT).exists)()


# Fencing ----------------------------------------------------------------------------------


async def test_an_older_owner_cannot_write_after_a_newer_claim(alias):
    old = DurableStorage(OBJECT, using=alias, fence_token=1)
    new = DurableStorage(OBJECT, using=alias, fence_token=2)
    await old.claim_fence()
    await old.put("k", "old")
    await new.claim_fence()
    before = await stored(alias)

    attempts = [
        old.put("k", "stale"),
        old.put({"k": "stale", "x": 1}),
        old.delete("k"),
        old.delete(["k"]),
        old.delete_all(),
        old.set_alarm(0),
        old.delete_alarm(),
        old.claim_fence(),
    ]
    for attempt in attempts:
        with pytest.raises(OwnershipLost, match="token 2"):
            await attempt
    with pytest.raises(OwnershipLost):
        async with old.transaction() as txn:
            await txn.put("k", "stale")
            await txn.delete("k")

    assert await stored(alias) == before
    assert await new.get_alarm() is None
    assert await old.get("k") == "old"  # reads are not fenced
    await new.put("k", "new")
    assert await new.get("k") == "new"


async def test_claim_fence_raises_the_token_and_is_idempotent(alias):
    storage = DurableStorage(OBJECT, using=alias, fence_token=5)
    await storage.claim_fence()
    await storage.claim_fence()
    get_token = ObjectFence.objects.using(alias).values_list("token", flat=True).get
    assert await sync_to_async(get_token)(object_key=OBJECT) == 5
    await DurableStorage(OBJECT, using=alias, fence_token=9).claim_fence()
    assert await sync_to_async(get_token)(object_key=OBJECT) == 9


async def test_a_first_fenced_write_records_its_token(alias):
    await DurableStorage(OBJECT, using=alias, fence_token=3).put("k", 1)
    with pytest.raises(OwnershipLost):
        await DurableStorage(OBJECT, using=alias, fence_token=2).put("k", 2)
    assert await DurableStorage(OBJECT, using=alias).get("k") == 1


async def test_without_a_token_there_is_no_fence(alias):
    await DurableStorage(OBJECT, using=alias, fence_token=7).claim_fence()
    unfenced = DurableStorage(OBJECT, using=alias)
    await unfenced.put("k", 1)
    assert await unfenced.get("k") == 1
    with pytest.raises(ValueError, match="fence_token"):
        await unfenced.claim_fence()


async def test_fences_are_per_object(alias):
    await DurableStorage("tests.Room:a", using=alias, fence_token=10).claim_fence()
    other = DurableStorage("tests.Room:b", using=alias, fence_token=1)
    await other.put("k", 1)
    assert await other.get("k") == 1


# Alarms -----------------------------------------------------------------------------------


async def alarm_row(alias: str, object_key: str = OBJECT) -> Alarm:
    return await sync_to_async(Alarm.objects.using(alias).get)(object_key=object_key)


async def test_set_alarm_with_an_aware_datetime_reads_back_in_utc(storage):
    plus5 = datetime.timezone(datetime.timedelta(hours=5))
    when = datetime.datetime(2031, 6, 1, 17, 30, 0, 123456, tzinfo=plus5)
    await storage.set_alarm(when)
    got = await storage.get_alarm()
    assert got == when
    assert got.utcoffset() == datetime.timedelta(0)
    assert got.microsecond == 123456


@pytest.mark.parametrize("epoch", [1_900_000_000, 1_900_000_000.25])
async def test_set_alarm_with_epoch_seconds(storage, epoch):
    await storage.set_alarm(epoch)
    assert await storage.get_alarm() == datetime.datetime.fromtimestamp(epoch, datetime.UTC)


@pytest.mark.parametrize(
    ("when", "error"),
    [
        (datetime.datetime(2030, 1, 1), ValueError),
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        (10**20, ValueError),
        (True, TypeError),
        ("2030-01-01", TypeError),
        (datetime.date(2030, 1, 1), TypeError),
        (None, TypeError),
    ],
    ids=repr,
)
async def test_set_alarm_refuses_what_is_not_a_point_in_time(storage, alias, when, error):
    with pytest.raises(error):
        await storage.set_alarm(when)
    assert not await sync_to_async(Alarm.objects.using(alias).exists)()


async def test_set_alarm_replaces_bumps_the_version_and_resets_retries(alias):
    storage = DurableStorage(OBJECT, using=alias, consumer="tests.app.Room", object_id="lobby")
    await storage.set_alarm(2_000_000_000)
    first = await alarm_row(alias)
    assert (first.consumer, first.object_id, first.retry_count) == ("tests.app.Room", "lobby", 0)
    await sync_to_async(Alarm.objects.using(alias).update)(retry_count=3)
    await storage.set_alarm(2_100_000_000)
    second = await alarm_row(alias)
    assert second.version == first.version + 1
    assert second.retry_count == 0
    assert await storage.get_alarm() == datetime.datetime.fromtimestamp(2_100_000_000, datetime.UTC)
    assert await sync_to_async(Alarm.objects.using(alias).count)() == 1


async def test_delete_alarm(storage):
    assert await storage.get_alarm() is None
    await storage.delete_alarm()  # nothing to delete: fine
    await storage.set_alarm(2_000_000_000)
    await storage.delete_alarm()
    assert await storage.get_alarm() is None


# The gate -------------------------------------------------------------------------------------


async def test_every_call_waits_for_the_gate(alias):
    entered = asyncio.Event()
    release = asyncio.Event()
    calls = []

    @contextlib.asynccontextmanager
    async def gate():
        calls.append("enter")
        entered.set()
        await release.wait()
        yield
        calls.append("exit")

    gated = DurableStorage(OBJECT, using=alias, gate=gate)
    task = asyncio.create_task(gated.put("k", 1))
    await entered.wait()
    assert await stored(alias) == {}  # held at the gate: nothing written
    release.set()
    await task
    assert await DurableStorage(OBJECT, using=alias).get("k") == 1
    assert calls == ["enter", "exit"]

    calls.clear()
    await gated.get("k")
    await gated.list()
    await gated.delete("k")
    await gated.set_alarm(0)
    await gated.get_alarm()
    await gated.delete_alarm()
    await gated.delete_all()
    async with gated.transaction() as txn:
        await txn.get("a")
        await txn.put("a", 1)
    assert calls == ["enter", "exit"] * 9


async def test_the_longest_object_key_with_the_longest_incompressible_key(alias):
    """PostgreSQL's btree index holds at most ~2.7 kB per entry: both limits together fit."""
    rng = random.Random(0)
    key = "".join(chr(rng.randrange(0x10000, 0x10FFFF)) for _ in range(KEY_MAX_BYTES // 4))
    assert len(key.encode()) == KEY_MAX_BYTES
    storage = DurableStorage("o" * OBJECT_KEY_MAX_LENGTH, using=alias)
    await storage.put(key, 1)
    await storage.put(key, 2)
    assert await storage.list() == {key: 2}
