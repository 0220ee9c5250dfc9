from django.urls import path

from .cluster_consumers import Ledger
from .consumers import Monitor, Probe, ReentrantProbe, ReentrantRoom, Room, Silent
from .storage_consumers import Vault

websocket_urlpatterns = [
    path("ws/room/<str:room>/", Room.as_asgi()),
    path("ws/reentrant/<str:room>/", ReentrantRoom.as_asgi()),
    path("ws/silent/<str:room>/", Silent.as_asgi()),
    path("ws/two/<str:a>/<str:b>/", Room.as_asgi()),
    path("ws/probe/<str:room>/", Probe.as_asgi()),
    path("ws/reentrant-probe/<str:room>/", ReentrantProbe.as_asgi()),
    path("ws/monitor/", Monitor.as_asgi()),
    path("ws/ledger/<str:room>/", Ledger.as_asgi()),
    path("ws/vault/<str:room>/", Vault.as_asgi()),
]

# Cluster tests (tests/test_cluster.py).
from channels.auth import AuthMiddlewareStack  # noqa: E402

from .cluster_consumers import Census, ClusterMonitor  # noqa: E402

websocket_urlpatterns += [
    path("ws/census/<str:room>/", Census.as_asgi()),
    path("ws/census-auth/<str:room>/", AuthMiddlewareStack(Census.as_asgi())),
    path("ws/cluster-monitor/", ClusterMonitor()),
]

# Storage, alarm and stub tests (tests/test_e2e_storage.py, test_alarms.py, test_stubs.py).
from .storage_consumers import (  # noqa: E402
    ReentrantSafe,
    Safe,
    StorageMonitor,
    UngatedReentrantSafe,
)

websocket_urlpatterns += [
    path("ws/safe/<str:room>/", Safe.as_asgi()),
    path("ws/reentrant-safe/<str:room>/", ReentrantSafe.as_asgi()),
    path("ws/ungated-safe/<str:room>/", UngatedReentrantSafe.as_asgi()),
    path("ws/storage-monitor/", StorageMonitor.as_asgi()),
]

# Resuming clients (tests/test_resume.py, tests/test_browser.py).
from .cluster_consumers import MONITOR_CLASSES  # noqa: E402
from .consumers import MONITORED  # noqa: E402
from .resume_consumers import Chronicle, Forgetful, LongChronicle  # noqa: E402

for _name, _cls in [("chronicle", Chronicle), ("long", LongChronicle), ("forgetful", Forgetful)]:
    MONITORED[_name] = _cls
    MONITOR_CLASSES[_name] = _cls

websocket_urlpatterns += [
    path("ws/chronicle/<str:room>/", Chronicle.as_asgi()),
    path("ws/long-chronicle/<str:room>/", LongChronicle.as_asgi()),
    path("ws/forgetful/<str:room>/", Forgetful.as_asgi()),
]
