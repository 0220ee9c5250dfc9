"""``DurableObject``: what every durable class is to the core (its names and hooks).

:class:`~django_durable.consumer.DurableConsumer` adds the public edges on top (routing,
stubs, ``broadcast_to``); the dispatcher, the cluster transport and the scheduler only
need this base, so they never import the edge that imports them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from django.core.exceptions import ImproperlyConfigured

from .limits import validate_object_id
from .names import group_name
from .names import object_key as _object_key
from .registry import register

if TYPE_CHECKING:
    from .state import DurableState
    from .websocket import DurableWebSocket


@dataclass(frozen=True)
class AlarmInfo:
    """What ``alarm(info)`` is told: how many times this alarm has been retried."""

    retry_count: int = 0

    @property
    def is_retry(self) -> bool:
        """Whether this run is a retry."""
        return self.retry_count > 0


class DurableObject:
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

    def __init_subclass__(cls, abstract: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if abstract:
            return  # a base for user classes (DurableObject), never an object itself
        path = f"{cls.__module__}.{cls.__qualname__}"
        if "durable_name" not in cls.__dict__ or not cls.__dict__["durable_name"]:
            cls.durable_name = path
        history = cls.history
        if not isinstance(history, int) or isinstance(history, bool) or history < 0:
            raise TypeError(f"{cls.__qualname__}.history must be an int >= 0; got {history!r}")
        register(cls, path)

    @classmethod
    def _create(cls, object_id: str, state: DurableState) -> DurableObject:
        # Instances are made by the dispatcher, never by user code, so __init__ stays
        # free for nothing: set the two attributes every handler relies on.
        instance = cls.__new__(cls)
        instance.id = object_id
        instance.state = state
        return instance

    # Routing ------------------------------------------------------------------------

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
        return _object_key(cls.durable_name, object_id)

    @classmethod
    def tag_group(cls, object_id: str, tag: str | None = None) -> str:
        """The channel-layer group of a tag (or of every socket, with ``tag=None``).

        A hash, so any tag (any UTF-8 up to 256 bytes, ``""`` and NUL included) gives a
        name Channels accepts: 48 characters of ``[a-z0-9.]``.
        """
        return group_name(cls.durable_name, validate_object_id(object_id), tag)

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
