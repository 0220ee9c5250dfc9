from django.urls import path

from .consumers import ChatRoom

websocket_urlpatterns = [path("ws/chat/<str:room>/", ChatRoom.as_asgi())]
