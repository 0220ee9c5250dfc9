"""Carrying a connection's scope to the process that runs its object.

``connect(ws)`` must see the same ``ws.scope`` whichever process the connection
arrived on, so with a distributed session layer every scope (local ones too) goes
through :func:`export_scope` and :func:`import_scope`: what can cross processes
(type, path, query string, headers, subprotocols, client, server, url_route, cookies)
is copied, and ``scope["user"]`` and ``scope["session"]``, set by Channels' auth and
session middleware, are re-loaded on the owner's side from their keys.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.apps import apps

COPIED = (
    "type",
    "asgi",
    "http_version",
    "scheme",
    "path",
    "raw_path",
    "root_path",
    "path_remaining",
    "query_string",
    "headers",
    "subprotocols",
    "client",
    "server",
    "url_route",
    "cookies",
    "extensions",
)
TUPLES = ("client", "server")


def export_scope(scope: dict[str, Any]) -> dict[str, Any]:
    """A plain-data copy of ``scope`` (msgpack-able), with user and session as keys."""
    out: dict[str, Any] = {}
    for name in COPIED:
        if name in scope and scope[name] is not None:
            out[name] = _plain(scope[name])
    user = scope.get("user")
    if user is not None:
        pk = getattr(user, "pk", None)
        out["user"] = None if pk is None else str(pk)
    session = scope.get("session")
    if session is not None:
        out["session"] = getattr(session, "session_key", None)
    return out


async def import_scope(exported: dict[str, Any]) -> dict[str, Any]:
    """The scope ``connect(ws)`` sees, rebuilt (user and session loaded) from an exported one."""
    scope = {k: v for k, v in exported.items() if k not in ("user", "session")}
    for name in TUPLES:
        if isinstance(scope.get(name), list):
            scope[name] = tuple(scope[name])
    if "headers" in scope:
        scope["headers"] = [tuple(pair) for pair in scope["headers"]]
    if "url_route" in scope:
        route = scope["url_route"]
        scope["url_route"] = {"args": tuple(route.get("args", ())), "kwargs": route["kwargs"]}
    if "user" in exported:
        scope["user"] = await _load_user(exported["user"])
    if "session" in exported and apps.is_installed("django.contrib.sessions"):
        from importlib import import_module

        from django.conf import settings

        store = import_module(settings.SESSION_ENGINE).SessionStore
        scope["session"] = store(exported["session"])
    return scope


async def _load_user(pk: str | None) -> Any:
    from django.contrib.auth.models import AnonymousUser

    if pk is None or not apps.is_installed("django.contrib.auth"):
        return AnonymousUser()
    from django.contrib.auth import get_user_model

    model = get_user_model()

    def load() -> Any:
        try:
            return model._default_manager.get(pk=model._meta.pk.to_python(pk))
        except model.DoesNotExist:
            return AnonymousUser()

    return await sync_to_async(load)()


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (str, bytes, int, float, bool)) or value is None:
        return value
    return str(value)
