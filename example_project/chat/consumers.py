"""A chat room as a durable object: one instance per room, shared by all its sockets.

What survives hibernation, and where it is kept:
- each person's name: in their socket's attachment (``ws.scope`` is gone after connect);
- who is here: the socket list itself (``self.state.get_websockets()``);
- the last 50 messages: in the room's storage, one key per message;
- the ping/pong keep-alive: the room's auto-response, answered without waking it;
- the last ``CHAT_HISTORY`` broadcasts (``history``): a page that reconnects gets those it
  missed (the page uses durable-socket.js with ``resume``), or a resync when it was
  away too long.
Nothing is kept in instance attributes: an instance may be dropped after any event.
"""

import json
from datetime import UTC, datetime
from urllib.parse import parse_qs

from django.conf import settings

from django_durable import DurableConsumer, DurableWebSocket, WebSocketRequestResponsePair

NAME_MAX_CHARS = 32
TEXT_MAX_CHARS = 2000
HISTORY = 50  # messages kept in storage and sent to each new socket


def history_key(number: int) -> str:
    # Zero-padded, so storage's key order is message order.
    return f"msg:{number:012d}"


class ChatRoom(DurableConsumer):
    object_id_kwarg = "room"  # ws/chat/<str:room>/: one object per room
    history = settings.CHAT_HISTORY  # broadcasts kept for pages that reconnect

    async def on_start(self):
        # Runs at every (re)creation. "ping" is then answered with "pong" by the
        # connection itself: keep-alives never wake a hibernated room.
        self.state.set_websocket_auto_response(WebSocketRequestResponsePair("ping", "pong"))

    async def connect(self, ws):
        # ws.scope exists only here: keep what must survive hibernation in the attachment.
        query = parse_qs(ws.scope["query_string"].decode())
        name = query.get("name", [""])[0].strip()[:NAME_MAX_CHARS] or "anonymous"
        self.state.accept_websocket(ws, tags=["members"])
        ws.serialize_attachment({"name": name})
        # A newcomer first gets the recent history, then everyone the new presence. A page
        # that resumes (it says where it was) gets what it missed replayed instead.
        if "durable_epoch" not in query:
            await ws.send(json.dumps({"type": "history", "messages": await self.stored_messages()}))
        await self.broadcast_presence(joined=name)

    async def websocket_message(self, ws, message):
        if not isinstance(message, str) or not message.strip():
            return
        name = ws.deserialize_attachment()["name"]
        event = {
            "type": "message",
            "name": name,
            "text": message.strip()[:TEXT_MAX_CHARS],
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        await self.remember(event)
        await self.send_to_all(event)

    async def websocket_close(self, ws, code, reason, was_clean):
        # The server completes the close handshake: no ws.close() needed here.
        await self.broadcast_presence(left=(ws.deserialize_attachment() or {}).get("name"))

    async def websocket_error(self, ws, error):
        await self.broadcast_presence(left=(ws.deserialize_attachment() or {}).get("name"))

    # History: the last HISTORY messages, in storage ----------------------------------

    async def remember(self, event):
        # One transaction: the counter, the new message and the oldest one's removal
        # are written together or not at all.
        async with self.state.storage.transaction() as txn:
            number = (await txn.get("count") or 0) + 1
            await txn.put({"count": number, history_key(number): event})
            if number > HISTORY:
                await txn.delete(history_key(number - HISTORY))

    async def stored_messages(self):
        recent = await self.state.storage.list(prefix="msg:", reverse=True, limit=HISTORY)
        return list(reversed(recent.values()))

    # Presence: straight from the socket list ------------------------------------------

    async def broadcast_presence(self, joined=None, left=None):
        # The socket list (and each attachment) survives hibernation. A socket whose
        # close is being handled is still listed until then, so keep only open ones.
        members = [
            (ws.deserialize_attachment() or {}).get("name", "anonymous")
            for ws in self.state.get_websockets("members")
            if ws.ready_state == DurableWebSocket.OPEN
        ]
        event = {"type": "presence", "members": members}
        if joined is not None:
            event["joined"] = joined
        if left is not None:
            event["left"] = left
        await self.send_to_all(event)

    async def send_to_all(self, event):
        await self.state.broadcast(json.dumps(event), tag="members")
