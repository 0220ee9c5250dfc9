"""A chat room as a durable object: one instance per room, shared by all its sockets."""

import json
from urllib.parse import parse_qs

from django_durable import DurableConsumer, DurableWebSocket, WebSocketRequestResponsePair

NAME_MAX_CHARS = 32
TEXT_MAX_CHARS = 2000


class ChatRoom(DurableConsumer):
    object_id_kwarg = "room"  # ws/chat/<str:room>/: one object per room

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
        await self.broadcast_presence()

    async def websocket_message(self, ws, message):
        if not isinstance(message, str) or not message.strip():
            return
        name = ws.deserialize_attachment()["name"]
        text = message.strip()[:TEXT_MAX_CHARS]
        await self.send_to_all({"type": "message", "name": name, "text": text})

    async def websocket_close(self, ws, code, reason, was_clean):
        # The server completes the close handshake: no ws.close() needed here.
        await self.broadcast_presence()

    async def websocket_error(self, ws, error):
        await self.broadcast_presence()

    async def broadcast_presence(self):
        # The socket list (and each attachment) survives hibernation. A socket whose
        # close is being handled is still listed until then, so keep only open ones.
        members = [
            (ws.deserialize_attachment() or {}).get("name", "anonymous")
            for ws in self.state.get_websockets("members")
            if ws.ready_state == DurableWebSocket.OPEN
        ]
        await self.send_to_all({"type": "presence", "members": members})

    async def send_to_all(self, event):
        await self.state.broadcast(json.dumps(event), tag="members")
