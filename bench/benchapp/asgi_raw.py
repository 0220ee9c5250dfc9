"""(a) The floor: a bare ASGI application that accepts and awaits ``receive``.

Each connection keeps exactly what it must to be reachable: its ``send`` callable in
one dict. A ``bcast:<n>`` frame makes the receiving connection call every stored
``send`` directly, one after another: the cheapest broadcast daphne allows.
"""

from __future__ import annotations

from typing import Any

from benchapp import control

#: Every accepted connection's ``send``, in accept order (dict as an ordered set).
SENDS: dict[Any, None] = {}


async def websocket_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    SENDS[send] = None
    try:
        while True:
            message = await receive()
            mtype = message["type"]
            if mtype == "websocket.receive":
                text = message.get("text")
                if text is None:
                    continue
                if text.startswith("bcast:"):
                    out = {"type": "websocket.send", "text": "b:" + text[6:]}
                    with control.timed():
                        for target in list(SENDS):
                            await target(out)
                elif text == "warmup":
                    await send({"type": "websocket.send", "text": "warm"})
            elif mtype == "websocket.disconnect":
                return
    finally:
        SENDS.pop(send, None)


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "websocket":
        await websocket_app(scope, receive, send)
    else:
        await control.http_app(scope, receive, send)


control.register(sockets=lambda: len(SENDS))
