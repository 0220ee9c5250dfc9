"""The example project in a real browser: Playwright driving Debian's Chromium.

A daphne process serves ``example_project`` (its own migrated SQLite in a temporary
directory, a short ``IDLE_TIMEOUT`` and turn timer through the environment variables
its settings read). Two pages chat in one room; the room hibernates (the status JSON
says it is no longer live) and messages, presence and history still work. Two pages
play tic-tac-toe; the turn timer (an alarm) skips the player who does not move.

Needs ``/usr/bin/chromium`` (``apt-get install chromium``) and Playwright for Python
(``pip install -e ".[browser]"``); never a browser downloaded by Playwright. Without
them the tests are skipped, or fail when ``DURABLE_REQUIRE_SERVICES=1`` (CI). Set
``DURABLE_SCREENSHOTS_DIR`` to keep screenshots of the pages (chat, status, game).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daphne_server import REPO_ROOT, DaphneServer, free_port
from tests.services import services_required
from tests.waiting import wait_until_sync

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
EXAMPLE = REPO_ROOT / "example_project"
IDLE_TIMEOUT = 1.5
TURN_SECONDS = 3
WAIT_MS = 10_000
#: Broadcasts a chat room keeps for pages that reconnect (ChatRoom.history).
CHAT_HISTORY = 4

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def _missing() -> list[str]:
    missing = []
    if not CHROMIUM.exists():
        missing.append(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append('Playwright is not installed (pip install -e ".[browser]")')
    return missing


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    missing = _missing()
    if missing:
        reason = "; ".join(missing)
        if services_required():
            pytest.fail(f"browser tests cannot run: {reason}", pytrace=False)
        pytest.skip(f"browser tests skipped: {reason}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


def example_environment(db: Path) -> dict[str, str]:
    return {
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "PYTHONPATH": os.pathsep.join([str(EXAMPLE), str(REPO_ROOT)]),
        "DURABLE_EXAMPLE_DB": str(db),
        "DURABLE_EXAMPLE_IDLE_TIMEOUT": str(IDLE_TIMEOUT),
        "DURABLE_EXAMPLE_TURN_SECONDS": str(TURN_SECONDS),
        "DURABLE_EXAMPLE_CHAT_HISTORY": str(CHAT_HISTORY),
    }


@pytest.fixture(scope="module")
def example_server(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The example project under daphne, with a database of its own."""
    env = example_environment(tmp_path_factory.mktemp("example") / "db.sqlite3")
    migrate = subprocess.run(
        [sys.executable, str(EXAMPLE / "manage.py"), "migrate", "--noinput", "-v0"],
        cwd=EXAMPLE,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    # The example accepts WebSockets only from its own origin, port included.
    port = free_port()
    env["DURABLE_EXAMPLE_ORIGINS"] = f"http://127.0.0.1:{port}"
    server = DaphneServer(env, application="config.asgi:application", name="example", port=port)
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def pages(browser: Any, example_server: DaphneServer) -> Iterator[Callable[[str], Any]]:
    """``open_page(path)``: a new page at ``path``; JavaScript errors fail the test."""
    context = browser.new_context(viewport={"width": 1000, "height": 700})
    errors: list[str] = []

    def open_page(path: str) -> Any:
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(example_server.http_url(path))
        return page

    try:
        yield open_page
    finally:
        context.close()
    assert not errors, f"JavaScript errors: {errors}"


def screenshot(page: Any, name: str, tmp_path: Path) -> Path:
    folder = Path(os.environ.get("DURABLE_SCREENSHOTS_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def status_of(server: DaphneServer, key: str) -> dict[str, Any] | None:
    with urllib.request.urlopen(server.http_url("status.json"), timeout=10) as response:
        report = json.loads(response.read())
    return next((o for o in report["objects"] if o["key"] == key), None)


def wait_for_status(
    server: DaphneServer, key: str, check: Callable[[dict[str, Any]], bool], what: str
) -> dict[str, Any]:
    return wait_until_sync(
        lambda: status_of(server, key),
        accept=lambda entry: entry is not None and check(entry),
        message=f"the status of {key}: {what}",
        timeout=WAIT_MS / 1000,
        interval=0.1,
    )


def send(page: Any, text: str) -> None:
    page.fill("#text", text)
    page.press("#text", "Enter")


def test_chat_room_hibernates_and_keeps_working(
    pages: Callable[[str], Any], example_server: DaphneServer, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    room = f"room-{uuid.uuid4().hex[:8]}"
    key = f"chat.consumers.ChatRoom/{room}"
    ada = pages(f"chat/{room}/?name=Ada")
    grace = pages(f"chat/{room}/?name=Grace")
    for page in (ada, grace):
        expect(page.locator("#presence li")).to_have_text(["Ada", "Grace"], timeout=WAIT_MS)
        expect(page.locator("#status")).to_have_text("connected")

    send(ada, "Hello Grace")
    expect(grace.locator("#log")).to_contain_text("Ada: Hello Grace", timeout=WAIT_MS)
    send(grace, "Hi Ada")
    expect(ada.locator("#log")).to_contain_text("Grace: Hi Ada", timeout=WAIT_MS)

    # Idle: the room hibernates; both sockets stay connected.
    entry = wait_for_status(example_server, key, lambda e: not e["live"], "hibernated")
    assert entry["sockets"] == 2 and entry["tags"] == {"members": 2}
    status_page = pages("status/")
    row = status_page.locator(f'tr[data-key="{key}"]')
    expect(row.locator(".badge")).to_have_text("hibernated", timeout=WAIT_MS)
    expect(row.locator("td.num")).to_have_text("2")
    screenshot(status_page, "status", tmp_path)

    # The next message wakes it, with everyone still there.
    send(grace, "Still here after hibernation")
    expect(ada.locator("#log")).to_contain_text(
        "Grace: Still here after hibernation", timeout=WAIT_MS
    )
    for page in (ada, grace):
        expect(page.locator("#status")).to_have_text("connected")

    # A newcomer gets the history from storage, and everyone the presence list,
    # computed from the socket list that survived hibernation.
    wait_for_status(example_server, key, lambda e: not e["live"], "hibernated again")
    lin = pages(f"chat/{room}/?name=Lin")
    for page in (ada, grace, lin):
        expect(page.locator("#presence li")).to_have_text(["Ada", "Grace", "Lin"], timeout=WAIT_MS)
    history = lin.locator("#log li.history")
    expect(history).to_have_count(3, timeout=WAIT_MS)
    expect(history.nth(0)).to_contain_text("Ada: Hello Grace")
    expect(history.nth(2)).to_contain_text("Grace: Still here after hibernation")
    expect(ada.locator("#log")).to_contain_text("Lin joined")
    screenshot(grace, "chat", tmp_path)

    # Someone leaves: the others' presence follows.
    grace.close()
    for page in (ada, lin):
        expect(page.locator("#presence li")).to_have_text(["Ada", "Lin"], timeout=WAIT_MS)
    expect(ada.locator("#log")).to_contain_text("Grace left")
    entry = wait_for_status(example_server, key, lambda e: e["sockets"] == 2, "at 2 sockets")
    assert entry["tags"] == {"members": 2}


def test_game_turn_timer_skips_the_slow_player(
    pages: Callable[[str], Any], example_server: DaphneServer, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    game = f"game-{uuid.uuid4().hex[:8]}"
    key = f"game.consumers.TicTacToe/{game}"
    ada = pages(f"game/{game}/?name=Ada")
    grace = pages(f"game/{game}/?name=Grace")
    expect(ada.locator("#banner")).to_have_text("Your turn (X)", timeout=WAIT_MS)
    expect(grace.locator("#banner")).to_have_text("Ada (X) to play", timeout=WAIT_MS)
    expect(grace.locator("[data-cell='0']")).to_be_disabled()

    entry = wait_for_status(example_server, key, lambda e: e["sockets"] == 2, "with 2 sockets")
    assert entry["tags"] == {"all": 2, "player:Ada": 1, "player:Grace": 1}
    assert entry["alarm"] is not None, "the turn timer is the object's alarm"

    ada.click("[data-cell='4']")
    expect(grace.locator("[data-cell='4']")).to_have_text("X", timeout=WAIT_MS)
    expect(grace.locator("#banner")).to_have_text("Your turn (O)", timeout=WAIT_MS)
    # "Your turn" goes to the tag player:<name> only: Ada has just her first one.
    expect(grace.locator("#news li", has_text="Your turn")).to_have_count(1)
    expect(ada.locator("#news li", has_text="Your turn")).to_have_count(1)
    screenshot(grace, "game", tmp_path)

    # Grace does not move: the alarm skips her turn (waking the game if it hibernated).
    expect(grace.locator("#news")).to_contain_text(
        "your turn was skipped", timeout=TURN_SECONDS * 1000 + WAIT_MS
    )
    expect(ada.locator("#news")).to_contain_text("Grace took too long")
    expect(ada.locator("#banner")).to_have_text("Your turn (X)")
    expect(ada.locator("[data-cell='4']")).to_have_text("X")

    ada.click("[data-cell='0']")
    expect(grace.locator("[data-cell='0']")).to_have_text("X", timeout=WAIT_MS)
    grace.click("[data-cell='8']")
    expect(ada.locator("[data-cell='8']")).to_have_text("O", timeout=WAIT_MS)


# Reconnecting pages (durable-socket.js, SPEC §14) ------------------------------------------


@pytest.fixture
def own_page(browser: Any, example_server: DaphneServer) -> Iterator[Callable[[str], Any]]:
    """``open_page(path)``: a page in a browser context of its own (its own network, so it
    can go offline alone); JavaScript errors fail the test."""
    contexts: list[Any] = []
    errors: list[str] = []

    def open_page(path: str) -> Any:
        context = browser.new_context(viewport={"width": 1000, "height": 700})
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(example_server.http_url(path))
        return page

    try:
        yield open_page
    finally:
        for context in contexts:
            context.close()
    assert not errors, f"JavaScript errors: {errors}"


def chat_lines(page: Any) -> list[str]:
    return [line for line in page.locator("#log li").all_inner_texts() if ": " in line]


def go_offline(page: Any, socket: str = "chatSocket") -> None:
    """Cut the page's network and its connection; it keeps trying to reconnect."""
    from playwright.sync_api import expect

    page.context.set_offline(True)
    page.evaluate(f"window.{socket}.reconnect()")
    expect(page.locator("#status")).to_contain_text("reconnecting", timeout=WAIT_MS)


def come_back(page: Any, socket: str = "chatSocket") -> None:
    from playwright.sync_api import expect

    page.context.set_offline(False)
    page.evaluate(f"window.{socket}.reconnect()")  # now, rather than at the next backoff
    expect(page.locator("#status")).to_have_text("connected", timeout=WAIT_MS)


def test_chat_page_back_online_gets_what_it_missed_once_in_order(
    own_page: Callable[[str], Any],
) -> None:
    from playwright.sync_api import expect

    room = f"room-{uuid.uuid4().hex[:8]}"
    ada = own_page(f"chat/{room}/?name=Ada")
    grace = own_page(f"chat/{room}/?name=Grace")
    for page in (ada, grace):
        expect(page.locator("#presence li")).to_have_text(["Ada", "Grace"], timeout=WAIT_MS)
    send(grace, "before")
    expect(ada.locator("#log")).to_contain_text("Grace: before", timeout=WAIT_MS)

    go_offline(ada)
    # As many as the room keeps, with its presence broadcasts "Ada left" and "Ada joined"
    # (connect() broadcasts that one when Ada is back, before her replay).
    missed = [f"missed {i}" for i in range(CHAT_HISTORY - 2)]
    for text in missed:
        send(grace, text)
    expect(grace.locator("#log")).to_contain_text(f"Grace: {missed[-1]}", timeout=WAIT_MS)
    send(ada, "typed while offline")  # queued by the page, sent when it is back
    assert ada.evaluate("window.chatSocket.queued") == 1

    come_back(ada)
    expect(grace.locator("#log")).to_contain_text("Ada: typed while offline", timeout=WAIT_MS)
    expect(ada.locator("#log")).to_contain_text("Ada: typed while offline", timeout=WAIT_MS)
    lines = [line.split(": ", 1)[1] for line in chat_lines(ada)]
    assert lines == ["before", *missed, "typed while offline"]
    # Replayed, not reloaded: the log was never replaced by the stored history.
    expect(ada.locator("#log li.history")).to_have_count(0)


def test_chat_page_away_too_long_resyncs_from_the_room(own_page: Callable[[str], Any]) -> None:
    from playwright.sync_api import expect

    room = f"room-{uuid.uuid4().hex[:8]}"
    ada = own_page(f"chat/{room}/?name=Ada")
    grace = own_page(f"chat/{room}/?name=Grace")
    for page in (ada, grace):
        expect(page.locator("#presence li")).to_have_text(["Ada", "Grace"], timeout=WAIT_MS)
    ada.evaluate(
        "window.resyncs = 0; window.chatSocket.addEventListener('resync', () => window.resyncs++)"
    )
    go_offline(ada)
    missed = [f"missed {i}" for i in range(CHAT_HISTORY + 2)]  # more than the room keeps
    for text in missed:
        send(grace, text)
    expect(grace.locator("#log")).to_contain_text(f"Grace: {missed[-1]}", timeout=WAIT_MS)
    come_back(ada)
    # The room said "resync"; the page connected again as a newcomer and got the log
    # from the room's storage: every message once, in order.
    history = ada.locator("#log li.history")
    expect(history).to_have_count(len(missed), timeout=WAIT_MS)
    assert ada.evaluate("window.resyncs") == 1
    assert [line.split(": ", 1)[1] for line in chat_lines(ada)] == missed
    send(grace, "live again")
    expect(ada.locator("#log")).to_contain_text("Grace: live again", timeout=WAIT_MS)


def test_game_page_back_online_sees_the_moves_it_missed(own_page: Callable[[str], Any]) -> None:
    from playwright.sync_api import expect

    game = f"game-{uuid.uuid4().hex[:8]}"
    ada = own_page(f"game/{game}/?name=Ada")
    grace = own_page(f"game/{game}/?name=Grace")
    expect(ada.locator("#banner")).to_have_text("Your turn (X)", timeout=WAIT_MS)
    expect(grace.locator("#banner")).to_have_text("Ada (X) to play", timeout=WAIT_MS)
    go_offline(grace, "gameSocket")
    ada.click("[data-cell='4']")
    expect(ada.locator("[data-cell='4']")).to_have_text("X", timeout=WAIT_MS)
    expect(grace.locator("[data-cell='4']")).to_have_text("")  # offline: not yet
    come_back(grace, "gameSocket")
    # She kept her seat, and got the move and the "Your turn" sent to her tag while she
    # was away (replayed, once), whatever the turn timer did since.
    expect(grace.locator("[data-cell='4']")).to_have_text("X", timeout=WAIT_MS)
    expect(grace.locator("#players li").first).to_contain_text("Ada")
    expect(grace.locator("#players li").nth(1)).to_contain_text("Grace")
    expect(grace.locator("#news li", has_text="Your turn: ")).to_have_count(1, timeout=WAIT_MS)


def test_chat_page_reconnects_after_a_server_restart(
    own_page: Callable[[str], Any], example_server: DaphneServer
) -> None:
    from playwright.sync_api import expect

    room = f"room-{uuid.uuid4().hex[:8]}"
    ada = own_page(f"chat/{room}/?name=Ada")
    grace = own_page(f"chat/{room}/?name=Grace")
    for page in (ada, grace):
        expect(page.locator("#presence li")).to_have_text(["Ada", "Grace"], timeout=WAIT_MS)
    send(grace, "before the restart")
    expect(ada.locator("#log")).to_contain_text("Grace: before the restart", timeout=WAIT_MS)

    example_server.restart()  # kill -9, then a new process on the same port
    # The pages reconnect by themselves (backoff). The in-memory history died with the
    # process, so the room says "resync" and the pages reload the log from storage.
    for page in (ada, grace):
        expect(page.locator("#status")).to_have_text("connected", timeout=4 * WAIT_MS)
    for page in (ada, grace):  # (in the order they came back)
        expect(page.locator("#presence li")).to_have_count(2, timeout=WAIT_MS)
        assert sorted(page.locator("#presence li").all_inner_texts()) == ["Ada", "Grace"]
    expect(ada.locator("#log li.history")).to_have_count(1, timeout=WAIT_MS)
    send(grace, "after the restart")
    expect(ada.locator("#log")).to_contain_text("Grace: after the restart", timeout=WAIT_MS)
    lines = [line.split(": ", 1)[1] for line in chat_lines(ada)]
    assert lines == ["before the restart", "after the restart"]


def test_client_heartbeat_without_answer_reconnects_and_queue_is_bounded(
    own_page: Callable[[str], Any],
) -> None:
    page = own_page("")  # any page of the site: the module is served next to it
    result = page.evaluate(
        """async () => {
          const { DurableSocket } = await import("/static/django_durable/durable-socket.js");
          // Nothing answers this request: the missing answer must close and reconnect.
          const events = await new Promise((resolve) => {
            const events = [];
            const socket = new DurableSocket("/ws/chat/heartbeat-test/?name=hb", {
              heartbeat: {
                request: "nobody answers", response: "pong", interval: 100, timeout: 200,
              },
              minDelay: 50,
            });
            const add = (...event) => events.push(event);
            socket.addEventListener("open", (e) => add("open", e.reconnected));
            socket.addEventListener("close", (e) => add("close", e.code, e.willReconnect));
            socket.addEventListener("reconnect", (e) => add("reconnect", e.detail.attempt));
            socket.addEventListener("open", (e) => {
              if (e.reconnected) { socket.close(); resolve(events); }
            });
          });
          // Nowhere to connect: sends are queued up to maxQueue, then refused.
          const offline = new DurableSocket("ws://127.0.0.1:9/", { maxQueue: 2, minDelay: 10000 });
          offline.send("one");
          offline.send("two");
          let refused = null;
          try { offline.send("three"); } catch (error) { refused = error.name; }
          const queued = offline.queued;
          offline.close();
          let afterClose = null;
          try { offline.send("four"); } catch (error) { afterClose = error.message; }
          return { events, refused, queued, afterClose };
        }"""
    )
    assert result["events"][:4] == [
        ["open", False],
        ["close", 4001, True],
        ["reconnect", 1],
        ["open", True],
    ], result["events"]
    assert result["refused"] == "RangeError" and result["queued"] == 2
    assert "after close()" in result["afterClose"]
