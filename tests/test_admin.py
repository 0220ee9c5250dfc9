"""The read-only admin for storage entries and alarms, and the live status page.

With Django's test client (a staff superuser, the admin of ``tests.app.urls``), and end
to end for the status page over Redis: two daphne servers, a staff user in their
database, each server's page marking the process that owns the object.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import http.cookiejar
import json
import re
import subprocess
import sys
import urllib.parse
import urllib.request
import uuid
from typing import Any

import pytest
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.test import AsyncClient, Client
from django.utils import timezone
from websockets.asyncio.client import connect

from django_durable.encoding import encode
from django_durable.models import Alarm, StorageEntry
from django_durable.status import short_id
from django_durable.testing import hibernate
from tests.app.consumers import Room
from tests.app.routing import websocket_urlpatterns
from tests.app.storage_consumers import Vault
from tests.daphne_server import REPO_ROOT, DaphneServer, base_environment, recv_json
from tests.services import REDIS_URL, delete_redis_prefix, need

ROOM = Room.durable_name
VAULT = Vault.durable_name
STORAGE = "/admin/django_durable/storageentry/"
ALARMS = "/admin/django_durable/alarm/"
STATUS = "/admin/django_durable/storageentry/status/"


@pytest.fixture
def staff(db) -> Client:
    user = User.objects.create_superuser("admin", "admin@example.com", "pw")
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def rows(db) -> None:
    StorageEntry.objects.create(
        object_key=f"{ROOM}/lobby",
        key=b"history",
        value=encode({"messages": ["hi", "there"], "at": dt.date(2026, 1, 2)}),
    )
    StorageEntry.objects.create(object_key=f"{ROOM}/kitchen", key=b"n", value=encode(7))
    StorageEntry.objects.create(
        object_key=f"{VAULT}/safe", key="clé".encode(), value=encode(b"\x00\x01")
    )
    StorageEntry.objects.create(object_key=f"{VAULT}/safe", key=b"bad", value=b"\xff\x00")
    Alarm.objects.create(
        object_key=f"{ROOM}/lobby",
        consumer=ROOM,
        object_id="lobby",
        scheduled_at=timezone.now() + dt.timedelta(minutes=5),
    )


def test_storage_entries_are_listed_decoded(staff, rows) -> None:
    page = staff.get(STORAGE).content.decode()
    assert "{&#x27;messages&#x27;: [&#x27;hi&#x27;, &#x27;there&#x27;]" in page
    assert "datetime.date(2026, 1, 2)" in page
    assert "clé" in page and "b&#x27;\\x00\\x01&#x27;" in page
    assert "&lt;cannot decode 2 bytes" in page  # a corrupt value is shown as such
    assert "Live status" in page  # the link to the status page


def test_filter_by_class_then_object_id(staff, rows) -> None:
    page = staff.get(STORAGE, {"class": VAULT}).content.decode()
    assert "clé" in page and "history" not in page
    page = staff.get(STORAGE, {"class": ROOM}).content.decode()
    assert "history" in page and "clé" not in page
    assert "?class=" in page and "object_id=kitchen" in page  # ids of the class offered
    page = staff.get(STORAGE, {"class": ROOM, "object_id": "kitchen"}).content.decode()
    assert "history" not in page and ">7<" in page
    page = staff.get(STORAGE, {"q": "lobby"}).content.decode()
    assert "history" in page and "clé" not in page


def test_detail_page_shows_the_whole_decoded_value(staff, rows) -> None:
    entry = StorageEntry.objects.get(key=b"history")
    page = staff.get(f"{STORAGE}{entry.pk}/change/").content.decode()
    assert "Value (decoded)" in page
    assert "&#x27;there&#x27;" in page
    assert 'type="submit"' not in page.split('id="content-main"')[1]  # nothing to save


def test_nothing_can_be_added_changed_or_deleted(staff, rows) -> None:
    entry = StorageEntry.objects.get(key=b"history")
    alarm = Alarm.objects.get()
    assert staff.get(f"{STORAGE}add/").status_code == 403
    assert staff.get(f"{ALARMS}add/").status_code == 403
    response = staff.post(f"{STORAGE}{entry.pk}/change/", {"object_key": "x/y"})
    assert response.status_code == 403
    assert staff.post(f"{STORAGE}{entry.pk}/delete/", {"post": "yes"}).status_code == 403
    assert staff.post(f"{ALARMS}{alarm.pk}/delete/", {"post": "yes"}).status_code == 403
    response = staff.post(
        STORAGE, {"action": "delete_selected", "_selected_action": [entry.pk], "post": "yes"}
    )
    assert StorageEntry.objects.filter(pk=entry.pk).exists()
    assert Alarm.objects.filter(pk=alarm.pk).exists()


def test_alarms_are_listed_and_filtered(staff, rows) -> None:
    page = staff.get(ALARMS).content.decode()
    assert "lobby" in page
    assert (
        "lobby" not in staff.get(ALARMS, {"class": VAULT}).content.decode().split("result_list")[-1]
    )
    assert "lobby" in staff.get(ALARMS, {"class": ROOM, "object_id": "lobby"}).content.decode()


def test_status_page_is_for_staff_only(db, rows) -> None:
    anonymous = Client()
    response = anonymous.get(STATUS)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    member = User.objects.create_user("member", password="pw")
    client = Client()
    client.force_login(member)
    assert client.get(STATUS).status_code == 302


def test_the_app_index_links_the_status_page(staff) -> None:
    page = staff.get("/admin/django_durable/").content.decode()
    assert f'href="{STATUS}"' in page


@pytest.mark.django_db(transaction=True)
async def test_status_page_shows_this_loops_objects() -> None:
    """Under ASGI the page reports the server's event loop (here the test's)."""
    user = await User.objects.acreate(username="boss", is_staff=True, is_superuser=True)
    client = AsyncClient()
    await client.aforce_login(user)
    room = f"admin-{uuid.uuid4().hex[:8]}"
    comm = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/room/{room}/")
    connected, _ = await comm.connect(10)
    assert connected
    try:
        page = (await client.get(STATUS)).content.decode()
        assert f'data-key="{Room.object_key(room)}"' in page
        assert "live (here)" in page
        assert "this process" in page  # the summary names this process
    finally:
        await comm.disconnect()
        await hibernate(Room, room)


def test_short_ids() -> None:
    assert short_id("durable.0123456789abcdef!fedcba9876543210") == "fedcba98"
    assert short_id("0123456789abcdef") == "01234567"
    assert short_id("") == ""


# End to end: two servers on Redis -----------------------------------------------------------


def _create_staff(sqlite: str, password: str) -> None:
    env = base_environment(
        {
            "DURABLE_TEST_SQLITE": sqlite,
            "DJANGO_SUPERUSER_PASSWORD": password,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
        }
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "django",
            "createsuperuser",
            "--noinput",
            "--username",
            "ops",
            "--email",
            "ops@example.com",
        ],
        cwd=REPO_ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )


def _logged_in(server: DaphneServer, password: str) -> urllib.request.OpenerDirector:
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    login = server.http_url("admin/login/")
    form = opener.open(login, timeout=10).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form)
    assert token is not None
    data = urllib.parse.urlencode(
        {
            "username": "ops",
            "password": password,
            "csrfmiddlewaretoken": token.group(1),
            "next": STATUS,
        }
    ).encode()
    request = urllib.request.Request(login, data=data, headers={"Referer": login})
    page = opener.open(request, timeout=10).read().decode()
    assert 'id="durable-summary"' in page, page[:500]
    return opener


def _status_json(server: DaphneServer) -> dict[str, Any]:
    with urllib.request.urlopen(server.http_url("durable/status/open/"), timeout=10) as r:
        return json.loads(r.read())


async def test_status_page_marks_the_owner_process_over_redis(
    daphne_factory, durable_sqlite
) -> None:
    need("redis")
    password = uuid.uuid4().hex
    await asyncio.to_thread(_create_staff, str(durable_sqlite), password)
    prefix = f"admin-{uuid.uuid4().hex[:10]}"
    env = {
        "DURABLE_TEST_SESSION_LAYER": "redis",
        "DURABLE_TEST_REDIS_URL": REDIS_URL,
        "DURABLE_TEST_REDIS_PREFIX": prefix,
        "DURABLE_TEST_IDLE_TIMEOUT": "30",
    }
    owner, other = daphne_factory(2, env=env)
    room = f"admin-{uuid.uuid4().hex[:8]}"
    try:
        async with connect(owner.url(f"/ws/room/{room}/")) as ws:
            await ws.send(json.dumps({"op": "whoami"}))
            await recv_json(ws)
            holder = (await asyncio.to_thread(_status_json, owner))["holder"]
            assert holder
            pages = {}
            for name, server in (("owner", owner), ("other", other)):
                opener = await asyncio.to_thread(_logged_in, server, password)
                pages[name] = await asyncio.to_thread(
                    lambda o=opener, s=server: (
                        o.open(s.http_url(STATUS), timeout=10).read().decode()
                    )
                )
        short = short_id(holder)
        assert len(short) == 8 and holder not in pages["owner"].replace(f'title="{holder}"', "")
        row = pages["owner"].split(f'data-key="{Room.object_key(room)}"')[1].split("</tr>")[0]
        assert f">{short}</code> <strong>(this process)</strong>" in row
        row = pages["other"].split(f'data-key="{Room.object_key(room)}"')[1].split("</tr>")[0]
        assert f">{short}</code>" in row and "(this process)" not in row
    finally:
        await delete_redis_prefix(prefix)
