from django.urls import path

from . import views

urlpatterns = [
    path("status/", views.page, name="status"),
    path("status.json", views.status_json, name="status-json"),
]
