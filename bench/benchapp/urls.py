"""No Django HTTP views: the control endpoints are a bare ASGI app (benchapp.control)."""

urlpatterns: list = []
