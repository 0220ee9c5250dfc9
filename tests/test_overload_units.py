"""The pieces of overload handling on their own: the mailbox, refused calls, alarms.

End to end (real daphne, real sockets) they are in tests/test_overload.py; here, what a
socket cannot show: the order a mailbox serves, a refused call counting once, and an
alarm refused by an overloaded object being retried without using up a retry.
"""

from __future__ import annotations

import asyncio
import datetime
import uuid

import pytest
from django.test import override_settings
from django.utils import timezone

from django_durable import alarms, metrics
from django_durable.events import CALL, CLOSE, MESSAGE, Event
from django_durable.exceptions import Overloaded
from django_durable.mailbox import Mailbox
from django_durable.models import Alarm
from django_durable.runtime import get_runtime
from django_durable.scheduler import AlarmScheduler
from tests.app.consumers import Room


def message(sid: str, data: str) -> Event:
    return Event(MESSAGE, sid, data)


def test_the_mailbox_serves_sockets_in_turn_each_in_order_and_control_events_first() -> None:
    box = Mailbox()
    for n in range(3):
        box.put_nowait(message("flood", f"f{n}"))
    box.put_nowait(message("calm", "c0"))
    box.put_nowait(message("calm", "c1"))
    box.put_nowait(Event(CALL))
    box.put_nowait(Event(CLOSE, "calm", (1000, "", True)))
    assert (box.count, box.nbytes) == (7, 10)
    assert box.socket_bytes == {"flood": 6, "calm": 4}
    assert box.heaviest_socket(exclude=set()) == "flood"
    assert box.heaviest_socket(exclude={"flood"}) == "calm"
    order = []
    while not box.empty():
        event = box.get_nowait()
        order.append(event.kind if event.socket_id is None else f"{event.socket_id}:{event.data}")
    assert order == [
        "call",
        "flood:f0",
        "calm:c0",
        "flood:f1",
        "calm:c1",
        "flood:f2",
        "calm:(1000, '', True)",
    ]
    assert (box.count, box.nbytes, box.socket_bytes) == (0, 0, {})


async def test_get_waits_for_an_event() -> None:
    box = Mailbox()
    waiting = asyncio.ensure_future(box.get())
    await asyncio.sleep(0)
    assert not waiting.done()
    box.put_nowait(message("a", "x"))
    assert (await asyncio.wait_for(waiting, 5)).data == "x"


@override_settings(DURABLE_OBJECTS={"MAX_QUEUED_EVENTS": 2})
async def test_a_call_to_an_overloaded_object_raises_overloaded_runs_nothing_and_counts_once() -> (
    None
):
    runtime = get_runtime()
    object_id = uuid.uuid4().hex
    key = Room.object_key(object_id)
    live = runtime.dispatcher.wake(Room, object_id, key)
    for n in range(3):
        live.queue.put_nowait(message("s", str(n)))
    ran = []

    async def fn(instance: Room) -> None:
        ran.append(instance)

    before = metrics.value("overload_refusals")
    with pytest.raises(Overloaded, match="MAX_QUEUED_EVENTS is 2"):
        await runtime.dispatcher.call(Room, object_id, key, fn)
    assert metrics.value("overload_refusals") == before + 1
    assert live.queue.count == 3 and ran == []


class RefusingTransport:
    async def call(self, *args: object) -> None:
        raise Overloaded("busy")


class FakeRuntime:
    transport = RefusingTransport()


@pytest.mark.django_db(transaction=True)
async def test_an_alarm_refused_as_overloaded_is_retried_without_counting_a_retry() -> None:
    key = Room.object_key("alarm-" + uuid.uuid4().hex[:8])
    object_id = key.split("/", 1)[1]
    now = timezone.now()

    def claim() -> alarms.ClaimedAlarm:
        alarms.schedule(
            key,
            now - datetime.timedelta(seconds=1),
            consumer=Room.durable_name,
            object_id=object_id,
        )
        (claimed,) = [
            a for a in alarms.claim_due(now, 60, 100, "default", {key}) if a.object_key == key
        ]
        return claimed

    from asgiref.sync import sync_to_async

    claimed = await sync_to_async(claim)()
    scheduler = AlarmScheduler(FakeRuntime())  # type: ignore[arg-type]
    await scheduler._fire(claimed, "default")
    row = await Alarm.objects.aget(object_key=key)
    assert row.retry_count == 0
    assert row.claimed_until is None
    assert alarms.from_db(row.scheduled_at) > now
