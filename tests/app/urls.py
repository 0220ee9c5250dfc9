"""HTTP routes of the test app: only what the end-to-end harness needs."""

from django.http import HttpRequest, HttpResponse
from django.urls import path


def health(request: HttpRequest) -> HttpResponse:
    """Answers "ok": proof that a daphne server under test is up and serving Django."""
    return HttpResponse("ok", content_type="text/plain")


urlpatterns = [path("health/", health, name="health")]
