import re
import secrets
from urllib.parse import urlencode

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse

GAME_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def index(request: HttpRequest) -> HttpResponse:
    """Pick a name and a game; the form submits here and is redirected to the game."""
    game = request.GET.get("game", "").strip()
    name = request.GET.get("name", "").strip()
    error = ""
    if "game" in request.GET:
        if GAME_NAME.match(game):
            query = f"?{urlencode({'name': name})}" if name else ""
            return redirect(reverse("game", args=[game]) + query)
        error = "Game names use letters, digits, '-' and '_' (at most 64)."
    suggestion = game or f"game-{secrets.token_hex(2)}"
    context = {"game": suggestion, "name": name, "error": error}
    return render(request, "game/index.html", context)


def game(request: HttpRequest, game: str) -> HttpResponse:
    if not GAME_NAME.match(game):
        raise Http404("no such game")
    name = request.GET.get("name", "").strip() or "anonymous"
    context = {"game": game, "name": name, "turn_seconds": settings.GAME_TURN_SECONDS}
    return render(request, "game/game.html", context)
