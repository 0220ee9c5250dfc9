"""Every durable class by name, so another process (or an alarm row) can name a class
and get it back.

Kept apart from the class itself: the scheduler, the cluster transport and the admin
look classes up, and the class sits at the public edge above all of them.
"""

from __future__ import annotations

from django.utils.module_loading import import_string

from .classes import DurableClass

#: Every durable class by ``durable_name``.
registry: dict[str, DurableClass] = {}
#: Every class defined, by ``durable_name`` then dotted path, for the system check:
#: two classes sharing a name would silently share sessions, storage and leases.
defined: dict[str, dict[str, DurableClass]] = {}


def register(cls: DurableClass, path: str) -> None:
    """Record a class (``DurableObject.__init_subclass__``)."""
    registry[cls.durable_name] = cls
    # The same path again (a reload, a class made by a function) replaces itself.
    defined.setdefault(cls.durable_name, {})[path] = cls


def consumer_class(name: str) -> DurableClass:
    """The class named ``name``: registered, or imported by its dotted path."""
    cls = registry.get(name)
    if cls is None:
        imported: DurableClass = import_string(name)
        return imported
    return cls
