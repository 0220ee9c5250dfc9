from django.urls import path

from . import views

urlpatterns = [
    path("", views.index, name="game-index"),
    path("<str:game>/", views.game, name="game"),
]
