"""daphne's connection checks, run when due (``django_durable.daphne_timers``).

In-process, on a stand-in for daphne's ``Server`` and its protocols: an idle socket is
checked at its ping deadline and not before, whatever the number of sockets; a
message moves the deadline on; the WebSocket timeout comes first when it is sooner;
handshakes, HTTP requests and closing sockets are checked every tick, as daphne does;
finished applications are reaped, closed connections dropped, an application that
outlives its connection is cancelled after the close timeout.

End to end, on real daphne: a silent socket still gets daphne's keep-alive ping and is
closed at ``--websocket_timeout``; sockets that stay open and quiet are not checked
at every tick; closed connections leave daphne's table; the setting turns it off.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
from typing import Any

from websockets.asyncio.client import connect

from django_durable.daphne_timers import (
    TICK,
    ConnectionSchedule,
    check_applications,
    check_due_timeouts,
    schedule_of,
)
from tests.cluster_harness import WAIT, Client, oid
from tests.daphne_server import DaphneFactory, DaphneServer
from tests.waiting import wait_until

# A stand-in for daphne's Server and protocols ---------------------------------------


class FakeServer:
    """What the schedule reads of daphne's ``Server``."""

    def __init__(self, ping_interval: float = 20.0, websocket_timeout: float = -1) -> None:
        self.connections: dict[Any, dict[str, Any]] = {}
        self.ping_interval = ping_interval
        self.websocket_timeout = websocket_timeout
        self.application_close_timeout = 10.0
        self.stopped = False
        self.now = 0.0  # the test's clock

    def stop(self) -> None:
        self.stopped = True

    def connect(self, protocol: Any, now: float) -> None:
        self.connections[protocol] = {"connected": now}
        schedule_of(self).file(protocol, now)


class FakeSocket:
    """An open WebSocket as daphne's ``WebSocketProtocol`` looks to the schedule."""

    STATE_CONNECTING, STATE_OPEN, STATE_CLOSING = 3, 1, 2

    def __init__(self, server: FakeServer, opened: float, state: int = 1) -> None:
        self.server = server
        self.socket_opened = opened
        self.last_ping = opened
        self.state = state
        self.checks = 0
        self.pings: list[float] = []
        self.errors: list[BaseException] = []

    def check_timeouts(self) -> None:
        """daphne's ping rule, on the test's clock."""
        self.checks += 1
        now = self.server.now
        if self.state == self.STATE_OPEN and now - self.last_ping > self.server.ping_interval:
            self.pings.append(now)
            self.last_ping = now

    def handle_exception(self, exc: BaseException) -> None:
        self.errors.append(exc)


class FakeRequest:
    """An HTTP request: no WebSocket deadlines, checked every tick."""

    def __init__(self) -> None:
        self.checks = 0

    def check_timeouts(self) -> None:
        self.checks += 1


START = 1_000_000.0  # a tick boundary (a multiple of TICK)


def server_at(start: float = START, **kwargs: Any) -> FakeServer:
    server = FakeServer(**kwargs)
    server.__dict__["_durable_schedule"] = schedule = ConnectionSchedule(server.connections)
    schedule.last_tick = int(start // TICK)
    return server


def ticks(server: FakeServer, until: float, start: float = START) -> int:
    """Run the timeout checker every tick from ``start`` to ``until``; checks made."""
    made = 0
    now = start
    while now <= until:
        server.now = now
        made += check_due_timeouts(server, now)
        now += TICK
    return made


# Timeouts ------------------------------------------------------------------------------


def test_an_idle_socket_is_checked_at_its_ping_deadline_not_before() -> None:
    server = server_at(ping_interval=20.0)
    sock = FakeSocket(server, START)
    server.connect(sock, START)
    ticks(server, START + TICK)  # the first check, as daphne's first walk would
    assert sock.checks == 1
    ticks(server, START + 20.0, start=START + 2 * TICK)
    assert sock.checks == 1, "checked before its ping was due"
    ticks(server, START + 44.0, start=START + 22.0)
    assert sock.pings == [START + 22.0, START + 44.0]
    assert sock.checks == 3


def test_ten_thousand_idle_sockets_cost_no_check_between_their_deadlines() -> None:
    server = server_at(ping_interval=3600.0)
    sockets = [FakeSocket(server, START) for _ in range(10_000)]
    for sock in sockets:
        server.connect(sock, START)
    assert ticks(server, START + TICK) == 10_000  # each one's first check
    # An hour of ticks: daphne's walk would make 18 million checks here.
    assert ticks(server, START + 3600.0, start=START + 2 * TICK) == 0
    assert schedule_of(server).filed() == 10_000
    assert ticks(server, START + 3604.0, start=START + 3602.0) == 10_000
    assert all(sock.pings == [START + 3602.0] for sock in sockets)


def test_a_message_moves_the_ping_deadline_on() -> None:
    server = server_at(ping_interval=20.0)
    sock = FakeSocket(server, START)
    server.connect(sock, START)
    ticks(server, START + TICK)
    sock.last_ping = START + 15.0  # daphne sets it on every incoming frame
    ticks(server, START + 22.0, start=START + 2 * TICK)
    assert sock.checks == 2 and sock.pings == []  # found the moved deadline at the old one
    ticks(server, START + 34.0, start=START + 24.0)
    assert sock.checks == 2, "checked again before the new deadline (35 s)"
    ticks(server, START + 36.0, start=START + 36.0)
    assert sock.pings == [START + 36.0]


def test_the_websocket_timeout_comes_first_when_it_is_sooner() -> None:
    server = server_at(ping_interval=20.0, websocket_timeout=6.0)
    sock = FakeSocket(server, START)
    server.connect(sock, START)
    ticks(server, START + 6.0)
    assert sock.checks == 1
    ticks(server, START + 8.0, start=START + 8.0)
    assert sock.checks == 2


def test_requests_handshakes_and_closing_sockets_are_checked_every_tick() -> None:
    server = server_at(ping_interval=3600.0)
    request = FakeRequest()
    handshake = FakeSocket(server, START, state=FakeSocket.STATE_CONNECTING)
    closing = FakeSocket(server, START, state=FakeSocket.STATE_CLOSING)
    for protocol in (request, handshake, closing):
        server.connect(protocol, START)
    ticks(server, START + 10 * TICK)
    assert request.checks == 10
    assert handshake.checks == closing.checks == 10


def test_a_connection_no_longer_in_daphnes_table_is_not_checked() -> None:
    server = server_at()
    sock = FakeSocket(server, START)
    server.connect(sock, START)
    del server.connections[sock]
    assert ticks(server, START + TICK) == 1
    assert sock.checks == 0
    assert schedule_of(server).filed() == 0


# Applications --------------------------------------------------------------------------


async def test_a_finished_application_is_reaped_and_its_closed_connection_dropped() -> None:
    server = server_at()
    sock = FakeSocket(server, START)
    server.connect(sock, START)
    app = asyncio.get_running_loop().create_future()
    server.connections[sock]["application_instance"] = app
    schedule = schedule_of(server)
    check_applications(server, START + 1)
    assert "application_instance" in server.connections[sock]  # nothing happened yet
    app.set_result(None)
    schedule.attention.add(sock)  # the done callback's doing under daphne
    check_applications(server, START + 2)
    assert "application_instance" not in server.connections[sock]
    assert sock in server.connections and sock not in schedule.attention
    server.connections[sock]["disconnected"] = START + 3
    schedule.attention.add(sock)  # protocol_disconnected's
    check_applications(server, START + 3)
    assert sock not in server.connections
    assert schedule.filed() == 0 and not schedule.attention


async def test_an_application_outliving_its_connection_is_cancelled_after_the_timeout() -> None:
    server = server_at()
    sock = FakeSocket(server, START)
    server.connect(sock, START)
    app = asyncio.get_running_loop().create_future()
    server.connections[sock].update(application_instance=app, disconnected=START)
    schedule = schedule_of(server)
    schedule.attention.add(sock)
    check_applications(server, START + 5)
    assert not app.cancelled() and sock in schedule.attention  # looked at every second
    check_applications(server, START + 11)
    assert app.cancelled()
    check_applications(server, START + 12)
    assert sock not in server.connections and not schedule.attention


async def test_an_application_error_reaches_its_open_connection() -> None:
    server = server_at()
    sock = FakeSocket(server, START)
    server.connect(sock, START)
    app = asyncio.get_running_loop().create_future()
    app.set_exception(ValueError("boom"))
    server.connections[sock]["application_instance"] = app
    schedule_of(server).attention.add(sock)
    check_applications(server, START + 1)
    assert [str(e) for e in sock.errors] == ["boom"]
    stopping = FakeSocket(server, START)
    server.connect(stopping, START)
    interrupted = asyncio.get_running_loop().create_future()
    interrupted.set_exception(KeyboardInterrupt())
    server.connections[stopping]["application_instance"] = interrupted
    schedule_of(server).attention.add(stopping)
    check_applications(server, START + 1)
    assert server.stopped


# End to end ----------------------------------------------------------------------------


async def open_raw_socket(server: DaphneServer, path: str) -> asyncio.StreamReader:
    """A WebSocket handshake by hand: the client then answers nothing, pings included."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\nOrigin: http://127.0.0.1\r\n\r\n"
        ).encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    assert head.startswith(b"HTTP/1.1 101"), head
    reader._durable_writer = writer  # type: ignore[attr-defined]  # kept open
    return reader


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    first, second = await reader.readexactly(2)
    length = second & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", await reader.readexactly(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", await reader.readexactly(8))
    return first & 0x0F, await reader.readexactly(length)


async def daphne_report(monitor: Client) -> dict[str, int]:
    reports = (await monitor.ask({"op": "daphne"}, "daphne"))["daphne"]
    assert len(reports) == 1, reports
    return reports[0]


async def test_a_silent_socket_is_pinged_then_timed_out(daphne_factory: DaphneFactory) -> None:
    (server,) = daphne_factory(
        1, extra_args=["--ping-interval", "1", "--ping-timeout", "60", "--websocket_timeout", "5"]
    )
    reader = await open_raw_socket(server, f"/ws/room/{oid()}/")
    seen: list[int] = []

    async def until_closed() -> None:
        while True:
            opcode, _ = await read_frame(reader)
            seen.append(opcode)
            if opcode == 0x8:
                return

    await asyncio.wait_for(until_closed(), WAIT)
    assert 0x9 in seen, f"no keep-alive ping before the close: opcodes {seen}"
    assert seen[-1] == 0x8


async def test_quiet_sockets_are_not_checked_every_tick_and_closed_ones_leave(
    daphne_factory: DaphneFactory,
) -> None:
    (server,) = daphne_factory(1, extra_args=["--ping-interval", "3600"])
    monitor = Client(
        await connect(server.url("/ws/cluster-monitor/"), open_timeout=WAIT, proxy=None), server
    )
    count = 20
    clients = [
        Client(
            await connect(server.url(f"/ws/room/{oid()}/"), open_timeout=WAIT, proxy=None), server
        )
        for _ in range(count)
    ]
    first = await wait_until(
        lambda: daphne_report(monitor),
        accept=lambda r: r["connections"] == count + 1 and r["filed"] == count + 1,
        message="every socket in daphne's table and filed",
        timeout=WAIT,
    )
    # Every socket's first check, then three more ticks: daphne's walk would check
    # each socket at each of them.
    after = await wait_until(
        lambda: daphne_report(monitor),
        accept=lambda r: r["last_tick"] >= first["last_tick"] + 4,
        message="four more ticks",
        timeout=WAIT,
        interval=0.2,
    )
    assert after["checked"] - first["checked"] <= count + 1, (first, after)
    for client in clients:
        await client.close()
    await wait_until(
        lambda: daphne_report(monitor),
        accept=lambda r: r["connections"] == 1 and r["filed"] == 1 and r["attention"] == 0,
        message="closed connections out of daphne's table and off the schedule",
        timeout=WAIT,
    )
    await monitor.close()


async def test_the_setting_leaves_daphnes_walks_alone(daphne_factory: DaphneFactory) -> None:
    (server,) = daphne_factory(1, env={"DURABLE_TEST_SCHEDULED_DAPHNE_CHECKS": "0"})
    monitor = Client(
        await connect(server.url("/ws/cluster-monitor/"), open_timeout=WAIT, proxy=None), server
    )
    assert (await monitor.ask({"op": "daphne"}, "daphne"))["daphne"] == []
    await monitor.close()
