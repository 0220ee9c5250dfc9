"""System checks for ``DURABLE_OBJECTS``: misconfiguration shows in ``manage.py check``
(and every other management command) as check messages, not as a traceback at the
first connection. Daphne's own command line runs no checks: :func:`refuse_to_serve`
prints the same messages and stops it before it listens (see ``apps.py``)."""

from __future__ import annotations

import logging
import sys
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register
from django.utils.module_loading import import_string

from .conf import DEFAULTS

ID = "django_durable"

logger = logging.getLogger(__name__)


def _positive_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


@register()
def check_durable_settings(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """Errors in ``DURABLE_OBJECTS`` (also run before serving)."""
    config = getattr(settings, "DURABLE_OBJECTS", None)
    if config is None:
        return []
    if not isinstance(config, dict):
        # No ``obj``: Django would print the value itself as a prefix ("yes: ...").
        return [
            Error(
                f"DURABLE_OBJECTS must be a dict; got {type(config).__name__} {config!r}.",
                id=f"{ID}.E001",
            )
        ]
    errors: list[Any] = []
    for key in sorted(set(config) - set(DEFAULTS)):
        errors.append(
            Warning(
                f"DURABLE_OBJECTS has an unknown key {key!r}.",
                hint=f"Known keys: {', '.join(sorted(DEFAULTS))}.",
                id=f"{ID}.W001",
            )
        )
    numbers = {
        "IDLE_TIMEOUT": (_positive_number, "a positive number of seconds"),
        "ALARM_RETRY_BASE_DELAY": (_positive_number, "a positive number of seconds"),
        "ALARM_POLL_INTERVAL": (_positive_number, "a positive number of seconds"),
        "LEASE_TIME": (_positive_number, "a positive number of seconds"),
        "HISTORY_TTL": (_positive_number, "a positive number of seconds"),
        "MAX_WEBSOCKETS": (_positive_int, "a positive int"),
        "ATTACHMENT_MAX_BYTES": (_positive_int, "a positive int"),
        "MAX_HELD_BYTES": (_positive_int, "a positive int"),
        "STORAGE_TIMEOUT": (
            lambda v: v is None or _positive_number(v),
            "a positive number of seconds or None",
        ),
        "MAX_MESSAGE_BYTES": (_positive_int, "a positive int"),
        "MAX_QUEUED_EVENTS": (_positive_int, "a positive int"),
        "MAX_QUEUED_BYTES": (_positive_int, "a positive int"),
        "MAX_SOCKET_QUEUED_EVENTS": (_positive_int, "a positive int"),
        "MAX_SOCKET_QUEUED_BYTES": (_positive_int, "a positive int"),
        "SHUTDOWN_TIMEOUT": (_positive_number, "a positive number of seconds"),
    }
    for key, (valid, what) in numbers.items():
        if key in config and not valid(config[key]):
            errors.append(
                Error(
                    f"DURABLE_OBJECTS[{key!r}] must be {what}; got {config[key]!r}.",
                    id=f"{ID}.E002",
                )
            )
    for key in ("HIBERNATE_EAGERLY", "SCHEDULED_DAPHNE_CHECKS"):
        if key in config and not isinstance(config[key], bool):
            errors.append(
                Error(
                    f"DURABLE_OBJECTS[{key!r}] must be True or False; got {config[key]!r}.",
                    id=f"{ID}.E003",
                )
            )
    database = config.get("DATABASE", "default")
    if "DATABASE" in config and (
        not isinstance(database, str) or database not in settings.DATABASES
    ):
        errors.append(
            Error(
                f"DURABLE_OBJECTS['DATABASE'] is {config['DATABASE']!r}, which is not in "
                "DATABASES.",
                id=f"{ID}.E004",
            )
        )
    if "SESSION_LAYER" in config:
        errors.extend(_check_session_layer(config["SESSION_LAYER"]))
    return errors


def _check_session_layer(spec: Any) -> list[Any]:
    from .session.base import BaseSessionLayer

    if not isinstance(spec, dict) or not isinstance(spec.get("BACKEND"), str):
        return [
            Error(
                "DURABLE_OBJECTS['SESSION_LAYER'] must be a dict whose 'BACKEND' is a "
                "dotted path (a str).",
                hint='For example {"BACKEND": "django_durable.session.RedisSessionLayer", '
                '"CONFIG": {"hosts": [...]}}.',
                id=f"{ID}.E010",
            )
        ]
    try:
        backend = import_string(spec["BACKEND"])
    except ImportError as exc:
        redis = spec["BACKEND"].startswith(
            ("django_durable.session.Redis", "django_durable.session.redis", "django_durable.redis")
        )
        return [
            Error(
                f"SESSION_LAYER BACKEND {spec['BACKEND']!r} cannot be imported: {exc}",
                hint=(
                    "Is the 'redis' extra installed (pip install "
                    '"django-durable-objects[redis]")?'
                    if redis
                    else "Check the dotted path: the module, then the class name."
                ),
                id=f"{ID}.E011",
            )
        ]
    if not (isinstance(backend, type) and issubclass(backend, BaseSessionLayer)):
        return [
            Error(
                f"SESSION_LAYER BACKEND {spec['BACKEND']!r} is not a session layer.",
                id=f"{ID}.E012",
            )
        ]
    config = spec.get("CONFIG", {})
    if not isinstance(config, dict):
        return [Error("SESSION_LAYER CONFIG must be a dict.", id=f"{ID}.E013")]
    validate = getattr(backend, "check_config", None)
    if validate is not None:
        return [Error(msg, id=f"{ID}.E014") for msg in validate(config)]
    return []


@register()
def check_durable_names(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """Each ``durable_name`` is used by one class only and contains no ``/``.

    The object key is ``"<durable_name>/<object id>"``: two classes with one name
    share every object's sockets, storage and lease, and a ``/`` in a name makes
    ``"a/b" + "/" + "c"`` the same key as ``"a" + "/" + "b/c"``. Classes are defined
    when their module is imported, so the project's ASGI application is imported
    first (what daphne serves is what is checked).
    """
    _import_asgi_application()
    from .registry import defined

    errors: list[Any] = []
    for name, classes in sorted(defined.items()):
        paths = sorted(classes)
        if "/" in name:
            errors.append(
                Error(
                    f"{', '.join(paths)}: durable_name {name!r} contains '/', which "
                    "separates it from object ids in object keys.",
                    hint="Use a name without '/' (dots are fine).",
                    obj=classes[paths[0]],
                    id=f"{ID}.E050",
                )
            )
        if len(paths) > 1:
            errors.append(
                Error(
                    f"durable_name {name!r} is used by {len(paths)} classes: "
                    f"{', '.join(paths)}; they would share sessions, storage and leases.",
                    hint="Give each DurableConsumer subclass a durable_name of its own.",
                    obj=classes[paths[-1]],
                    id=f"{ID}.E051",
                )
            )
    return errors


def _import_asgi_application() -> None:
    path = getattr(settings, "ASGI_APPLICATION", None)
    if isinstance(path, str) and path:
        try:
            import_string(path)
        except Exception:  # not this check's to report: daphne would fail on its own
            logger.debug("could not import ASGI_APPLICATION %r", path, exc_info=True)


def format_errors(errors: list[CheckMessage]) -> str:
    """``errors`` as ``manage.py check`` prints them (without colours)."""
    lines = "\n".join(sorted(str(e) for e in errors))
    count = len(errors)
    return (
        "SystemCheckError: System check identified some issues:\n\nERRORS:\n"
        f"{lines}\n\nSystem check identified {count} issue{'s' if count != 1 else ''}."
    )


def refuse_to_serve() -> None:
    """Stop a server that runs no system checks (daphne's command line) when
    ``DURABLE_OBJECTS`` has errors: the check's messages on stderr, exit status 1, no
    traceback, before it listens. ``runserver`` runs the checks itself."""
    errors = [e for e in check_durable_settings() if e.is_serious()]
    if errors:
        sys.stderr.write(format_errors(errors) + "\n")
        raise SystemExit(1)
