"""Every error django-durable raises on purpose.

Each class names the kind of mistake twice: once as a ``DurableError`` (so callers can
catch everything from this package) and once as the built-in category Python code
already expects (``ValueError`` for a bad argument, ``RuntimeError`` for a call made in
the wrong state), so ``except ValueError`` keeps working for people who never heard of
this package.
"""

from __future__ import annotations


class DurableError(Exception):
    """Base class of every error raised by django-durable."""


# Invalid arguments ----------------------------------------------------------------


class InvalidTags(DurableError, ValueError):
    """Too many distinct tags, a tag over 256 bytes, or a tag that is not a str."""


class AttachmentTooLarge(DurableError, ValueError):
    """An attachment whose encoding is over ``ATTACHMENT_MAX_BYTES``."""


class AutoResponseTooLarge(DurableError, ValueError):
    """An auto-response request or response over 2,048 bytes."""


class InvalidEventTimeout(DurableError, ValueError):
    """An event timeout that is negative or longer than seven days."""


class InvalidCloseCode(DurableError, ValueError):
    """A close code the server may not send (only 1000 and 3000-4999 are allowed)."""


class InvalidCloseReason(DurableError, ValueError):
    """A close reason over 123 bytes."""


class InvalidSubprotocol(DurableError, ValueError):
    """A subprotocol given to ``accept_websocket()`` that the client did not offer."""


class InvalidObjectId(DurableError, ValueError):
    """An object id that is not 1 to 256 UTF-8 bytes free of control characters."""


class UnsupportedValue(DurableError, TypeError):
    """A value the attachment encoding cannot represent (it never falls back to pickle)."""


class ValueLimitExceeded(UnsupportedValue, ValueError):
    """A value past the encoding's bounds: nested deeper than 64 levels, an integer over
    16,384 bits, or a set or dict whose keys were crafted to share one hash."""


class CorruptValue(DurableError, ValueError):
    """Stored bytes that do not decode to a value (corrupt, hostile, or past the bounds)."""


class InvalidStorageKey(DurableError, ValueError):
    """A storage key that is not a str, or is over 2,048 bytes."""


class InvalidStorageValue(DurableError, ValueError):
    """A storage value that is ``None`` or encodes to more than 128 KiB."""


class MessageTooLarge(DurableError, ValueError):
    """An outgoing message over the ASGI server's limit (daphne's
    ``--websocket-max-message-size``): nothing was sent, the socket stays open."""


# Invalid state ----------------------------------------------------------------------


class TooManyWebSockets(DurableError, RuntimeError):
    """An accept past ``MAX_WEBSOCKETS`` sockets on one object."""


class WebSocketAlreadyAccepted(DurableError, RuntimeError):
    """A second ``accept_websocket()`` of the same socket."""


class WebSocketNotAccepted(DurableError, RuntimeError):
    """A call that needs an accepted socket (``get_tags``, ``send``) on one that is not."""


class WebSocketClosed(DurableError, RuntimeError):
    """A send on a socket that was closed (by either side), also after hibernation."""


class HandlerTimeout(DurableError, TimeoutError):
    """A handler ran past the object's hibernatable event timeout and was cancelled."""


class OwnershipLost(DurableError, RuntimeError):
    """This process no longer holds the object's lease: its writes are refused (fencing)."""


class Overloaded(DurableError, RuntimeError):
    """The object has more events waiting than ``MAX_QUEUED_EVENTS``/``MAX_QUEUED_BYTES``
    allow: the stub call was refused and nothing ran. Try again later."""


class SessionLayerUnavailable(DurableError, ConnectionError):
    """The session layer's backing service (Redis) cannot be reached."""


class DeliveryFailed(DurableError, ConnectionError):
    """A message for sockets held by another process could not be handed to it in time
    (its channel stayed full): those sockets did not get it."""


class StorageTimeout(DurableError, TimeoutError):
    """A storage call got no answer from the database within ``STORAGE_TIMEOUT``.

    For a write this does not mean it was not applied: the database may still commit
    the transaction after the call gave up (all of it or none of it). Read back before
    writing again.
    """


# Calls from outside --------------------------------------------------------------------


class RPCNotAllowed(DurableError, PermissionError):
    """A stub call to a method that is not decorated with ``@django_durable.rpc``."""


class RPCError(DurableError, RuntimeError):
    """A stub call whose method raised an exception that cannot be re-raised as itself."""


class ScopeUnavailable(DurableError, RuntimeError):
    """``ws.scope`` read outside ``connect()``: it does not survive hibernation."""
