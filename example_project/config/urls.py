from django.urls import include, path

urlpatterns = [
    path("", include("chat.urls")),
    path("game/", include("game.urls")),
    path("", include("dashboard.urls")),
]
