"""The request/response pair a gateway answers by itself, without waking the object."""

from __future__ import annotations


class WebSocketRequestResponsePair:
    """An exact-match request and its canned response (``str`` or ``bytes`` each).

    A text request matches only a text frame and a bytes request only a binary frame,
    with no trimming or case folding: matching must be cheap enough to run on every
    incoming frame of every socket.
    """

    __slots__ = ("request", "response")

    def __init__(self, request: str | bytes, response: str | bytes) -> None:
        for name, value in (("request", request), ("response", response)):
            if not isinstance(value, (str, bytes)):
                raise TypeError(f"auto-response {name} must be str or bytes; got {value!r}")
        self.request = request
        self.response = response

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, WebSocketRequestResponsePair):
            return NotImplemented
        return (self.request, self.response) == (other.request, other.response)

    def __hash__(self) -> int:
        return hash((self.request, self.response))

    def __repr__(self) -> str:
        return f"WebSocketRequestResponsePair({self.request!r}, {self.response!r})"
