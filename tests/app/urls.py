"""HTTP routes of the test app: the harness's health check and views using stubs."""

from django.http import HttpRequest, HttpResponse
from django.urls import path

from . import views


def health(request: HttpRequest) -> HttpResponse:
    """Answers "ok": proof that a daphne server under test is up and serving Django."""
    return HttpResponse("ok", content_type="text/plain")


urlpatterns = [
    path("health/", health, name="health"),
    path("vault/<str:room>/read/<str:key>/", views.stub_read),
    path("vault/<str:room>/call/<str:method>/", views.stub_call),
    path("vault/<str:room>/broadcast/", views.broadcast),
]
