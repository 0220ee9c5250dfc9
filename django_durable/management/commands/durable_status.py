"""``manage.py durable_status``: live and hibernated objects, their sockets and tags.

Where the answer comes from:

- ``--url http://host:port/<status path>``: a running server's status view
  (``django_durable.views.status``) tells what it holds. This is the only way to see
  objects of the in-memory session layer, which live in the server's memory.
- otherwise, with the Redis session layer: Redis itself, read directly. Every object
  with sockets or a lease, on every process, with the process that owns each live one.
- otherwise (the in-memory layer): nothing about objects can be seen from this
  process; the command says so and shows what the database holds (pending alarms,
  objects with storage), which the server shares.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Count

from ... import conf
from ...session import build_session_layer
from ...status import layer_name, layer_status, report_of, summarize

MEMORY_NOTE = """\
Session layer: {layer} (in memory)
This command cannot see which objects are live or hibernated, nor their sockets and
tags: with the in-memory session layer they exist only in the memory of the server
process, and this command runs in a process of its own. To see them:
  - ask the running server: manage.py durable_status --url http://<host>:<port>/<path>
    where <path> is where your URLconf mounts a status view: django_durable.views.status
    answers active staff users (pass a session cookie with --header
    "Cookie: sessionid=..."), a status_view(allow=...) whom its rule lets in;
  - or use the Redis session layer, which this command reads directly."""


class Command(BaseCommand):
    """``manage.py durable_status``: objects, owners and sockets, from a server or Redis."""

    help = (
        "Show durable objects: live ones, hibernated ones with sockets, socket counts, "
        "tags and (with Redis) owners. With the in-memory session layer, pass --url to "
        "ask a running server."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        """``--url``, ``--header``, ``--json``, ``--timeout``."""
        parser.add_argument(
            "--url",
            help="a running server's status view, e.g. http://127.0.0.1:8000/durable/status/",
        )
        parser.add_argument(
            "--header",
            action="append",
            default=[],
            metavar="'NAME: VALUE'",
            help="an HTTP header to send with --url (repeatable), e.g. a session cookie",
        )
        parser.add_argument(
            "--timeout", type=float, default=10.0, help="seconds to wait for --url or Redis"
        )
        parser.add_argument("--json", action="store_true", help="print the report as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        """Read the report from a server's status view, Redis, or the database, and print it."""
        if options["url"]:
            report = fetch_report(options["url"], options["header"], options["timeout"])
            report.setdefault("source", options["url"])
        else:
            spec = conf.get("SESSION_LAYER")
            layer = build_session_layer(spec)
            if layer.distributed:
                report = asyncio.run(redis_report(layer, options["timeout"]))
            else:
                report = database_report(layer_name(layer))
        if options["json"]:
            self.stdout.write(json.dumps(report, indent=2, sort_keys=True))
        elif "objects" in report:
            self.stdout.write(format_report(report))
        else:
            self.stdout.write(format_database_report(report))


# Sources ------------------------------------------------------------------------------


def fetch_report(url: str, headers: list[str], timeout: float) -> dict[str, Any]:
    """A server's status JSON, with errors that say what to do."""
    if not url.startswith(("http://", "https://")):
        raise CommandError(f"--url must be an http:// or https:// URL; got {url!r}")
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    for header in headers:
        name, sep, value = header.partition(":")
        if not sep or not name.strip():
            raise CommandError(f"--header must look like 'Name: value'; got {header!r}")
        request.add_header(name.strip(), value.strip())
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        hint = ""
        if exc.code == 403:
            hint = f" {_refusal(exc)}"
        elif exc.code == 404:
            hint = " Is django_durable.views.status mounted at that path?"
        raise CommandError(f"{url} answered {exc.code} {exc.reason}.{hint}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CommandError(f"cannot reach {url}: {reason}") from None
    try:
        report = json.loads(body)
    except ValueError:
        raise CommandError(f"{url} did not answer JSON; is it the status view?") from None
    if not isinstance(report, dict) or "objects" not in report:
        raise CommandError(f"{url} answered JSON that is not a durable objects status")
    return report


def _refusal(exc: urllib.error.HTTPError) -> str:
    """What a 403 from a status view means: its own words, and how to get in."""
    try:
        detail = json.loads(exc.read()).get("detail")
    except Exception:
        detail = None
    said = f"The view says: {detail}. " if isinstance(detail, str) and detail else ""
    return (
        f"{said}django_durable.views.status answers active staff users (pass a session "
        "cookie: --header 'Cookie: sessionid=...'); a status_view(allow=...) answers "
        "whom its rule lets in."
    )


async def redis_report(layer: Any, seconds: float) -> dict[str, Any]:
    """The report from the Redis session layer alone."""
    try:
        async with asyncio.timeout(seconds):
            objects = await layer_status(layer)
    except TimeoutError:
        raise CommandError(f"Redis did not answer within {seconds:g} s") from None
    except Exception as exc:
        raise CommandError(f"reading the Redis session layer failed: {exc}") from None
    finally:
        await layer.close()
    return report_of(objects, layer, source=f"Redis (key prefix {layer.prefix!r})")


def database_report(layer: str) -> dict[str, Any]:
    """What a separate process can learn with the in-memory layer: the database's rows."""
    from ...alarms import from_db
    from ...models import Alarm, StorageEntry

    using = conf.get("DATABASE")
    report: dict[str, Any] = {"session_layer": layer, "scope": "none", "database": using}
    try:
        alarms = Alarm.objects.using(using).order_by("scheduled_at")
        report["alarms"] = [
            {
                "key": key,
                "at": from_db(when).isoformat(),
                "retry_count": retries,
            }
            for key, when, retries in alarms.values_list(
                "object_key", "scheduled_at", "retry_count"
            )
        ]
        stored = (
            StorageEntry.objects.using(using)
            .values("object_key")
            .annotate(keys=Count("id"))
            .order_by("object_key")
        )
        report["storage"] = [{"key": row["object_key"], "keys": row["keys"]} for row in stored]
    except Exception as exc:
        report["database_error"] = str(exc).strip() or type(exc).__name__
    return report


# Formatting ---------------------------------------------------------------------------


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = []
    for row in [headers, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append("  ".join(cells).rstrip())
    return lines


def _short_time(iso: str | None) -> str:
    if not iso:
        return "-"
    try:
        when = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def format_report(report: dict[str, Any]) -> str:
    """The report as tables."""
    objects: list[dict[str, Any]] = report.get("objects") or []
    totals = report.get("totals") or summarize(objects)
    cluster = report.get("scope") == "cluster"
    holder = report.get("holder")
    where = "every process (Redis session layer)" if cluster else "this server process only"
    lines = [
        f"Source: {report.get('source', '?')}",
        f"Session layer: {report.get('session_layer', '?')}; objects of {where}",
    ]
    if report.get("process"):
        lines.append(f"Server process: {report['process']}")
    lines.append(
        f"{totals['objects']} object(s): {totals['live']} live, {totals['hibernated']} "
        f"hibernated; {totals['sockets']} socket(s)"
    )
    if not objects:
        lines.append("No live objects and no hibernated objects with sockets.")
        return "\n".join(lines)
    headers = ["OBJECT", "STATE", "SOCKETS"]
    if cluster:
        headers.append("OWNER")
    headers += ["ALARM", "TAGS"]
    rows = []
    for obj in objects:
        sockets = str(obj["sockets"])
        others = {k: v for k, v in (obj.get("states") or {}).items() if k != "OPEN"}
        if others:
            sockets += " (" + ", ".join(f"{v} {k.lower()}" for k, v in others.items()) + ")"
        row = [obj["key"], "live" if obj["live"] else "hibernated", sockets]
        if cluster:
            owner = obj.get("owner") or "-"
            if holder and owner == holder:
                owner += " (this server)"
            row.append(owner)
        tags = obj.get("tags") or {}
        row += [
            _short_time(obj.get("alarm")),
            ", ".join(f"{tag}={count}" for tag, count in tags.items()) or "-",
        ]
        rows.append(row)
    lines.append("")
    lines += _table(headers, rows)
    return "\n".join(lines)


def format_database_report(report: dict[str, Any]) -> str:
    """What the database alone shows."""
    lines = [MEMORY_NOTE.format(layer=report["session_layer"]), ""]
    lines.append(f"What the database {report['database']!r} shows (the server shares it):")
    if "database_error" in report:
        lines.append(f"  it could not be read: {report['database_error']}")
        return "\n".join(lines)
    alarms = report["alarms"]
    lines.append(f"  Pending alarms: {len(alarms)}")
    lines += [
        f"    {a['key']}  at {_short_time(a['at'])}"
        + (f"  (retry {a['retry_count']})" if a["retry_count"] else "")
        for a in alarms
    ]
    storage = report["storage"]
    lines.append(f"  Objects with storage: {len(storage)}")
    lines += [f"    {s['key']}  {s['keys']} key(s)" for s in storage]
    return "\n".join(lines)
