import re
from urllib.parse import urlencode

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse

ROOM_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SUGGESTED_ROOMS = ["lobby", "django", "random"]


def index(request: HttpRequest) -> HttpResponse:
    """Choose a room and a name; the form submits here and is redirected to the room."""
    # "pick" is a suggested room's button, "room" the text field.
    room = (request.GET.get("pick") or request.GET.get("room", "")).strip()
    name = request.GET.get("name", "").strip()
    error = ""
    if "room" in request.GET or "pick" in request.GET:
        if ROOM_NAME.match(room):
            query = f"?{urlencode({'name': name})}" if name else ""
            return redirect(reverse("room", args=[room]) + query)
        error = "Room names use letters, digits, '-' and '_' (at most 64)."
    context = {
        "rooms": SUGGESTED_ROOMS,
        "room": room,
        "name": name,
        "error": error,
        "idle_timeout": f"{settings.DURABLE_OBJECTS.get('IDLE_TIMEOUT', 10):g}",
    }
    return render(request, "chat/index.html", context)


def room(request: HttpRequest, room: str) -> HttpResponse:
    if not ROOM_NAME.match(room):
        raise Http404("no such room")
    name = request.GET.get("name", "").strip() or "anonymous"
    return render(request, "chat/room.html", {"room": room, "name": name})
