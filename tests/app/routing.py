from django.urls import path

from .consumers import ReentrantRoom, Room, Silent

websocket_urlpatterns = [
    path("ws/room/<str:room>/", Room.as_asgi()),
    path("ws/reentrant/<str:room>/", ReentrantRoom.as_asgi()),
    path("ws/silent/<str:room>/", Silent.as_asgi()),
    path("ws/two/<str:a>/<str:b>/", Room.as_asgi()),
]
