from django.urls import path

from .consumers import TicTacToe

websocket_urlpatterns = [path("ws/game/<str:game>/", TicTacToe.as_asgi())]
