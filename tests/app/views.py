"""Views that reach durable objects from ordinary Django code, as users will."""

from __future__ import annotations

import json

from asgiref.sync import async_to_sync
from django.http import HttpRequest, JsonResponse

from django_durable.exceptions import DurableError

from .consumers import Room
from .storage_consumers import Vault


def stub_read(request: HttpRequest, room: str, key: str) -> JsonResponse:
    """A sync view: the stub call runs through async_to_sync, as documented."""
    try:
        value = async_to_sync(Vault.get(room).read)(key)
    except DurableError as exc:
        return JsonResponse({"error": type(exc).__name__, "message": str(exc)}, status=500)
    return JsonResponse({"value": value})


async def stub_call(request: HttpRequest, room: str, method: str) -> JsonResponse:
    """An async view calling any method name (so tests can try a refused one)."""
    args = json.loads(request.GET.get("args", "[]"))
    try:
        result = await getattr(Vault.get(room), method)(*args)
    except Exception as exc:
        return JsonResponse({"error": type(exc).__name__, "message": str(exc)}, status=500)
    return JsonResponse({"result": result})


async def broadcast(request: HttpRequest, room: str) -> JsonResponse:
    await Vault.broadcast_to(room, request.GET["text"], tag=request.GET.get("tag"))
    return JsonResponse({"ok": True})


async def room_call(request: HttpRequest, room: str, method: str) -> JsonResponse:
    """A stub call to a ``Room`` (tests/test_overload.py): its result or its error."""
    args = json.loads(request.GET.get("args", "[]"))
    try:
        result = await getattr(Room.get(room), method)(*args)
    except Exception as exc:
        return JsonResponse({"error": type(exc).__name__, "message": str(exc)}, status=500)
    return JsonResponse({"result": result})
