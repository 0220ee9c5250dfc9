"""Optional views: the objects this server (or, with Redis, the cluster) holds, as JSON,
and the Prometheus metrics.

Mount it in your URLconf; it answers staff users only::

    from django_durable import views as durable_views

    urlpatterns = [path("durable/status/", durable_views.status)]

``status_view(allow=...)`` makes a view with another rule: ``allow(request)`` returns
(or awaits to) a bool. The JSON is :func:`django_durable.status.status_report`'s, and
``manage.py durable_status --url http://host:port/durable/status/`` prints it.

:func:`metrics_view` serves ``prometheus_client``'s default registry (django-durable's
metrics and whatever else is registered there) in Prometheus's text format, to anyone:
mount it where only your Prometheus reaches it. With django-prometheus you need no
view: its ``/metrics`` shows django-durable's metrics already.

The views are ``async`` on purpose: they must run on the server's event loop, where
its objects are (a sync view runs in a thread, which has no durable runtime).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse

from .status import status_report, status_timeout

Allow = Callable[[HttpRequest], bool | Awaitable[bool]]


async def is_staff(request: HttpRequest) -> bool:
    """The default rule: an active staff user (needs Django's auth middleware)."""
    auser = getattr(request, "auser", None)
    if auser is None:
        return False
    user = await auser()
    return bool(getattr(user, "is_active", False) and getattr(user, "is_staff", False))


def status_view(allow: Allow | None = None) -> Callable[[HttpRequest], Awaitable[HttpResponse]]:
    """An async view returning the status JSON to requests that ``allow`` lets in."""
    rule: Allow = is_staff if allow is None else allow
    refused = (
        "the durable objects status is for active staff users"
        if allow is None
        else "this status view's rule refused the request"
    )

    async def view(request: HttpRequest) -> HttpResponse:
        if request.method not in ("GET", "HEAD"):
            response: HttpResponse = JsonResponse({"error": "use GET"}, status=405)
            response["Allow"] = "GET, HEAD"
            return response
        limit = status_timeout()
        try:
            # The staff check and the report read the database and Redis: bounded, so
            # a hanging service makes the view fail clearly rather than hang.
            async with asyncio.timeout(limit):
                verdict: Any = rule(request)
                if inspect.isawaitable(verdict):
                    verdict = await verdict
                report = await status_report() if verdict else None
        except TimeoutError:
            response = JsonResponse(
                {
                    "error": "timeout",
                    "detail": f"no answer within {limit:g} s (STORAGE_TIMEOUT): the "
                    "database or Redis is not answering",
                },
                status=503,
            )
            response["Cache-Control"] = "no-store"
            return response
        if report is None:
            return JsonResponse(
                {"error": "forbidden", "detail": refused},
                status=403,
            )
        response = JsonResponse(report)
        response["Cache-Control"] = "no-store"
        return response

    return view


#: The staff-only status view.
status = status_view()


async def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus metrics (``prometheus_client``'s default registry) in the text format.

    Answers 501 with the install command when ``prometheus_client`` is not installed."""
    try:
        from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
    except ImportError:
        return HttpResponse(
            'prometheus_client is not installed: pip install "django-durable-objects[metrics]"\n',
            status=501,
            content_type="text/plain; charset=utf-8",
        )
    from .prometheus import register

    register()  # already done by the app's ready(), unless the registry was replaced
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)


__all__ = ["is_staff", "metrics_view", "status", "status_view"]
