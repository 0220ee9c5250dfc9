"""Tic-tac-toe as a durable object: one instance per game, shared by players and watchers.

- Everyone's socket is tagged ``all`` and ``player:<name>``, so a message meant for
  one person (an error, "your turn") is ``broadcast(..., tag=f"player:{name}")``:
  it reaches every tab that person has open, on whichever process holds it.
- The game (seats, board, whose turn, the turn's deadline) is in storage: the object
  can hibernate between moves, even mid-game.
- The turn timer is the object's alarm: each turn sets it to the deadline, and
  ``alarm(info)`` skips a player who took too long; it wakes a hibernated game.
  A player skipped ``MAX_SKIPS`` times in a row forfeits, so an abandoned game stops.
The first two names to arrive take the seats X and O; later ones watch, and take a
seat that frees up. A name is a person: two tabs with one name share a seat.
"""

import json
import time
from urllib.parse import parse_qs

from django.conf import settings

from django_durable import DurableConsumer, DurableWebSocket, WebSocketRequestResponsePair

NAME_MAX_CHARS = 32
MAX_SKIPS = 3
MARKS = ("X", "O")
LINES = [(0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8), (0, 4, 8), (2, 4, 6)]


def turn_seconds():
    return float(getattr(settings, "GAME_TURN_SECONDS", 20))


def new_game():
    return {
        "seats": {"X": None, "O": None},
        "board": [""] * 9,
        "turn": "X",
        "status": "waiting",  # waiting (for players), playing, over
        "result": "",
        "line": None,  # the winning line's cells
        "deadline": None,  # epoch seconds when the current turn ends
        "skips": {"X": 0, "O": 0},
        "starts": "X",  # who starts the next game (alternates)
    }


def other(mark):
    return "O" if mark == "X" else "X"


def winner(board):
    for line in LINES:
        a, b, c = (board[i] for i in line)
        if a and a == b == c:
            return a, list(line)
    return None, None


class TicTacToe(DurableConsumer):
    object_id_kwarg = "game"
    # Broadcasts kept for pages that reconnect; every connect() also broadcasts the whole
    # state, so a page that was away too long (a resync) gets it again anyway.
    history = 20

    async def on_start(self):
        self.state.set_websocket_auto_response(WebSocketRequestResponsePair("ping", "pong"))

    # Connections --------------------------------------------------------------------

    async def connect(self, ws):
        query = parse_qs(ws.scope["query_string"].decode())
        name = query.get("name", [""])[0].strip()[:NAME_MAX_CHARS] or "anonymous"
        self.state.accept_websocket(ws, tags=["all", f"player:{name}"])
        ws.serialize_attachment({"name": name})
        game = await self.load()
        self.fill_seats(game)
        await self.start_if_ready(game)
        await self.save_and_publish(game)

    async def websocket_close(self, ws, code, reason, was_clean):
        await self.left(ws)

    async def websocket_error(self, ws, error):
        await self.left(ws)

    async def left(self, ws):
        name = (ws.deserialize_attachment() or {}).get("name")
        if name in self.online_names():
            return  # another tab of the same person is still here
        game = await self.load()
        mark = self.seat_of(game, name)
        if mark is not None and game["status"] != "playing":
            game["seats"][mark] = None
            if game["status"] == "over":
                game["status"] = "waiting"
            self.fill_seats(game)
            await self.start_if_ready(game)
        # A player who leaves mid-game keeps the seat: a page that lost its network comes
        # back (durable-socket.js reconnects); meanwhile the turn timer skips them, and
        # MAX_SKIPS skips in a row forfeit the game.
        await self.save_and_publish(game)

    # Moves --------------------------------------------------------------------------

    async def websocket_message(self, ws, message):
        try:
            command = json.loads(message)
        except (TypeError, ValueError):
            return
        if not isinstance(command, dict):
            return
        name = ws.deserialize_attachment()["name"]
        game = await self.load()
        mark = self.seat_of(game, name)
        if command.get("type") == "move":
            problem = self.check_move(game, mark, command.get("cell"))
            if problem:
                await self.tell(name, {"type": "notice", "text": problem})
                return
            await self.play(game, mark, command["cell"])
        elif command.get("type") == "restart":
            if mark is None or game["status"] != "over":
                return
            game["status"] = "waiting"
            await self.start_if_ready(game)
        else:
            return
        await self.save_and_publish(game)

    def check_move(self, game, mark, cell):
        if mark is None:
            return "You are watching this game."
        if game["status"] != "playing":
            return "The game is not on."
        if mark != game["turn"]:
            return "Not your turn."
        if not isinstance(cell, int) or not 0 <= cell < 9 or game["board"][cell]:
            return "Pick an empty square."
        return ""

    async def play(self, game, mark, cell):
        game["board"][cell] = mark
        game["skips"][mark] = 0
        won, line = winner(game["board"])
        if won:
            game["line"] = line
            await self.finish(game, f"{game['seats'][won]} ({won}) wins")
        elif all(game["board"]):
            await self.finish(game, "A draw")
        else:
            await self.next_turn(game, other(mark))

    # The turn timer: the object's alarm -------------------------------------------

    async def next_turn(self, game, mark):
        game["turn"] = mark
        game["deadline"] = time.time() + turn_seconds()
        await self.state.storage.set_alarm(game["deadline"])
        await self.tell(game["seats"][mark], {"type": "your_turn", "seconds": turn_seconds()})

    async def alarm(self, info):
        game = await self.load()
        if game["status"] != "playing" or game["deadline"] is None:
            return
        late = game["deadline"] - time.time()
        if late > 0.5:  # an alarm from an earlier turn: wait for this one's deadline
            await self.state.storage.set_alarm(game["deadline"])
            return
        mark = game["turn"]
        name = game["seats"][mark]
        game["skips"][mark] += 1
        if game["skips"][mark] >= MAX_SKIPS:
            await self.finish(game, f"{name} missed {MAX_SKIPS} turns in a row and forfeits")
        else:
            await self.tell(name, {"type": "notice", "text": "Too slow: your turn was skipped."})
            # Everyone else: every socket but that person's.
            skipped = self.state.get_websockets(f"player:{name}")
            notice = {"type": "notice", "text": f"{name} took too long: turn skipped."}
            await self.state.broadcast(json.dumps(notice), tag="all", exclude=skipped)
            await self.next_turn(game, other(mark))
        await self.save_and_publish(game)

    # Game state ---------------------------------------------------------------------

    async def load(self):
        return await self.state.storage.get("game") or new_game()

    def online_names(self):
        return {
            (ws.deserialize_attachment() or {}).get("name")
            for ws in self.state.get_websockets("all")
            if ws.ready_state == DurableWebSocket.OPEN
        }

    def seat_of(self, game, name):
        for mark in MARKS:
            if name is not None and game["seats"][mark] == name:
                return mark
        return None

    def fill_seats(self, game):
        """Give free seats to people here who have none, in order of arrival."""
        seated = set(game["seats"].values())
        for ws in self.state.get_websockets("all"):
            name = (ws.deserialize_attachment() or {}).get("name")
            if ws.ready_state != DurableWebSocket.OPEN or name in seated:
                continue
            free = [m for m in MARKS if game["seats"][m] is None]
            if not free:
                return
            game["seats"][free[0]] = name
            seated.add(name)

    async def start_if_ready(self, game):
        if game["status"] != "waiting" or None in game["seats"].values():
            return
        first = game["starts"]
        game.update(board=[""] * 9, status="playing", result="", line=None, skips={"X": 0, "O": 0})
        game["starts"] = other(first)
        await self.next_turn(game, first)

    async def finish(self, game, result):
        game.update(status="over", result=result, deadline=None)
        await self.state.storage.delete_alarm()
        # Seats of players who are gone free up for whoever is here.
        online = self.online_names()
        for mark in MARKS:
            if game["seats"][mark] not in online:
                game["seats"][mark] = None
        self.fill_seats(game)

    async def save_and_publish(self, game):
        await self.state.storage.put("game", game)
        seated = set(game["seats"].values())
        watchers = sorted(n for n in self.online_names() if n not in seated)
        left = None if game["deadline"] is None else max(0.0, game["deadline"] - time.time())
        event = {
            "type": "state",
            "seats": game["seats"],
            "board": game["board"],
            "turn": game["turn"],
            "status": game["status"],
            "result": game["result"],
            "line": game["line"],
            "seconds_left": left,
            "watchers": watchers,
        }
        await self.state.broadcast(json.dumps(event), tag="all")

    async def tell(self, name, event):
        """One person only: every socket tagged with their name."""
        if name is not None:
            await self.state.broadcast(json.dumps(event), tag=f"player:{name}")
