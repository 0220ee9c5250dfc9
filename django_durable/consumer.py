"""``DurableConsumer``: the base class of a durable object.

Subclass it, write the hooks you need, and route ``YourClass.as_asgi()`` like any
Channels consumer. Unlike a Channels consumer, an instance is not one connection: it
is one *object* (a room, a game), shared by every connection whose route names the
same object id, and it may be dropped and re-created between events (hibernation), so
anything that must last lives in attachments, the object's settings or storage.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, ClassVar

from django.core.exceptions import ImproperlyConfigured

from .gateway import Gateway
from .limits import validate_object_id

if TYPE_CHECKING:
    from .scheduler import AlarmInfo
    from .state import DurableState
    from .stubs import DurableStub
    from .websocket import DurableWebSocket


def _framed(text: str) -> bytes:
    raw = text.encode("utf-8", "surrogatepass")
    return len(raw).to_bytes(4, "big") + raw


def group_name(durable_name: str, object_id: str, tag: str | None) -> str:
    """The group of ``tag`` of an object: a hash of an unambiguous encoding of the three.

    Each part is length-prefixed (and "every socket" is told apart from any tag by a
    byte of its own), so no choice of names, ids and tags, NUL bytes included, can make
    two different triples hash the same input; separators could (``"a\\0#b", "c"``
    and ``"a", "b\\0#c"`` did).
    """
    data = b"durable-group\x00" + _framed(durable_name) + _framed(object_id)
    data += b"\x00" if tag is None else b"\x01" + _framed(tag)
    return f"durable.{hashlib.sha256(data).hexdigest()[:40]}"


#: Every DurableConsumer subclass by ``durable_name``, so another process (or an alarm
#: row) can name a class and get it back.
registry: dict[str, type[DurableConsumer]] = {}
#: Every subclass defined, by ``durable_name`` then dotted path, for the system check:
#: two classes sharing a name would silently share sessions, storage and leases.
defined: dict[str, dict[str, type[DurableConsumer]]] = {}


class DurableConsumer:
    """One durable object: handlers for its sockets, its alarm and its RPC methods."""

    #: The route kwarg holding the object id; None: the route's only kwarg.
    object_id_kwarg: ClassVar[str | None] = None
    #: Let handlers interleave at ``await`` points (events of one socket stay ordered).
    reentrant: ClassVar[bool] = False
    #: The class's stable name across processes (default: its dotted path).
    durable_name: ClassVar[str] = ""
    #: How many of the object's last broadcasts to keep for clients that reconnect
    #: (``?durable_resume=1``; see docs/reconnecting.md). 0: none, no cost.
    history: ClassVar[int] = 0

    id: str
    state: DurableState

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        path = f"{cls.__module__}.{cls.__qualname__}"
        if "durable_name" not in cls.__dict__ or not cls.__dict__["durable_name"]:
            cls.durable_name = path
        history = cls.history
        if not isinstance(history, int) or isinstance(history, bool) or history < 0:
            raise TypeError(f"{cls.__qualname__}.history must be an int >= 0; got {history!r}")
        registry[cls.durable_name] = cls
        # The same path again (a reload, a class made by a function) replaces itself.
        defined.setdefault(cls.durable_name, {})[path] = cls

    @classmethod
    def _create(cls, object_id: str, state: DurableState) -> DurableConsumer:
        # Instances are made by the dispatcher, never by user code, so __init__ stays
        # free for nothing: set the two attributes every handler relies on.
        instance = cls.__new__(cls)
        instance.id = object_id
        instance.state = state
        return instance

    # Routing ------------------------------------------------------------------------

    @classmethod
    def as_asgi(cls) -> Gateway:
        """The ASGI application to route, like a Channels consumer's ``as_asgi()``."""
        return Gateway(cls)

    @classmethod
    def get_object_id(cls, scope: dict[str, Any]) -> str:
        """The object a connection belongs to: by default, a URL route kwarg."""
        kwargs = (scope.get("url_route") or {}).get("kwargs") or {}
        if cls.object_id_kwarg is not None:
            if cls.object_id_kwarg not in kwargs:
                raise ImproperlyConfigured(
                    f"{cls.__name__}.object_id_kwarg is {cls.object_id_kwarg!r} but the "
                    f"route has kwargs {sorted(kwargs)!r}"
                )
            return str(kwargs[cls.object_id_kwarg])
        if len(kwargs) != 1:
            raise ImproperlyConfigured(
                f"{cls.__name__}: the route has kwargs {sorted(kwargs)!r}; set "
                "object_id_kwarg or override get_object_id()"
            )
        return str(next(iter(kwargs.values())))

    @classmethod
    def object_key(cls, object_id: str) -> str:
        """The object's name in the session layer, storage and leases."""
        return f"{cls.durable_name}/{object_id}"

    @classmethod
    def tag_group(cls, object_id: str, tag: str | None = None) -> str:
        """The channel-layer group of a tag (or of every socket, with ``tag=None``).

        A hash, so any tag (any UTF-8 up to 256 bytes, ``""`` and NUL included) gives a
        name Channels accepts: 48 characters of ``[a-z0-9.]``.
        """
        return group_name(cls.durable_name, validate_object_id(object_id), tag)

    # Reaching the object from outside ----------------------------------------------

    @classmethod
    def get(cls, object_id: str) -> DurableStub:
        """A stub whose ``@rpc`` methods run on the live instance, wherever it lives."""
        from .stubs import DurableStub

        return DurableStub(cls, validate_object_id(object_id))

    @classmethod
    async def broadcast_to(
        cls, object_id: str, message: str | bytes, tag: str | None = None
    ) -> None:
        """Send to the object's open sockets (of ``tag``) without waking it."""
        from .outside import broadcast_to

        await broadcast_to(cls, validate_object_id(object_id), message, tag)

    # Hooks: all optional; the defaults ignore the event -----------------------------

    async def on_start(self) -> None:
        """Runs once per (re)creation, before any other handler."""

    async def connect(self, ws: DurableWebSocket) -> None:
        """A new connection. The default accepts it without tags."""
        self.state.accept_websocket(ws)

    async def websocket_message(self, ws: DurableWebSocket, message: str | bytes) -> None:
        """A text (``str``) or binary (``bytes``) message."""

    async def websocket_close(
        self, ws: DurableWebSocket, code: int, reason: str, was_clean: bool
    ) -> None:
        """The socket closed; the server has already completed the close handshake."""

    async def websocket_error(self, ws: DurableWebSocket, error: BaseException) -> None:
        """The socket ended by an error that is not a disconnect."""

    async def alarm(self, info: AlarmInfo) -> None:
        """The object's alarm fired."""
