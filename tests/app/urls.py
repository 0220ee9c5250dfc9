"""HTTP routes of the test app: the harness's health check and views using stubs."""

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import path

from . import views


def health(request: HttpRequest) -> HttpResponse:
    """Answers "ok": proof that a daphne server under test is up and serving Django."""
    return HttpResponse("ok", content_type="text/plain")


urlpatterns = [
    path("health/", health, name="health"),
    path("admin/", admin.site.urls),
    path("vault/<str:room>/read/<str:key>/", views.stub_read),
    path("vault/<str:room>/call/<str:method>/", views.stub_call),
    path("vault/<str:room>/broadcast/", views.broadcast),
    path("room/<str:room>/call/<str:method>/", views.room_call),
]

# Storage, alarm and stub tests (tests/test_stubs.py).
from . import storage_views  # noqa: E402

urlpatterns += [
    path("safe/<str:room>/call/<str:method>/", storage_views.safe_call),
    path("safe/<str:room>/roundtrip/", storage_views.safe_roundtrip),
    path("safe/not-durable/", storage_views.not_durable),
]

# The storage benchmark (bench/storage_bench.py).
urlpatterns += [
    path("safe/<str:room>/bench-stub/", storage_views.bench_stub),
    path("safe/<str:room>/bench-storage/", storage_views.bench_storage),
]

# The durable objects status views (tests/test_status.py): the staff-only one as users
# mount it, and an open one the status command can read with --url.
from django_durable import views as durable_views  # noqa: E402

urlpatterns += [
    path("durable/status/", durable_views.status),
    path("durable/status/open/", durable_views.status_view(allow=lambda request: True)),
    # A rule of the project's own (the example's: DEBUG on) that refuses.
    path("durable/status/closed/", durable_views.status_view(allow=lambda request: False)),
]

# Prometheus metrics (tests/test_metrics.py), as a project without django-prometheus
# mounts them.
urlpatterns += [path("durable/metrics/", durable_views.metrics_view)]
