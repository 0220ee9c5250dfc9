"""The status page: this process's live and hibernated objects, updated every second.

The data comes from ``django_durable.status`` (the page polls ``status.json``). In
your own project, mount the staff-only ``django_durable.views.status`` instead; this
example has no users, so it opens the same view while DEBUG is on.
"""

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from django_durable.views import status_view


def page(request: HttpRequest) -> HttpResponse:
    idle = settings.DURABLE_OBJECTS.get("IDLE_TIMEOUT", 10)
    return render(request, "dashboard/status.html", {"idle_timeout": f"{idle:g}"})


status_json = status_view(allow=lambda request: settings.DEBUG)
