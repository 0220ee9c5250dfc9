#!/usr/bin/env python
"""Cluster benchmark: django-durable across daphne processes sharing one Redis.

Three scenarios in one run (``python bench/cluster_bench.py``, a few minutes on 2
cores), each also a script of its own with the same options:

1. ``cluster_broadcast.py``: one broadcast to 2,000 sockets on two processes, against
   stock Channels consumers doing ``group_send`` on ``RedisChannelLayer``;
2. ``cluster_latency.py``: the round trip from a socket on a non-owner process against
   the owner-local path and references, and one object's throughput;
3. ``cluster_failover.py``: failover after ``kill -9`` of the owner.

The first two share five daphne processes (2 durable, 2 plain Channels, 1 in-memory;
latency runs first); the failovers start their own. Every server is ``clusterapp``
(see ``bench/clusterapp``), started as

    PYTHONPATH=.:bench DJANGO_SETTINGS_MODULE=clusterapp.settings BENCH_PREFIX=<fresh> \\
        python -m daphne -b 127.0.0.1 -p PORT --websocket_timeout -1 -v 0 \\
        clusterapp.asgi:application

with ``channels_redis.core.RedisChannelLayer`` and ``RedisSessionLayer`` configured as
``docs/deployment.md`` says (hosts as dicts with ``socket_timeout: None`` and
``max_connections: 1000``, ``capacity: 10000``), under a key prefix of its own, and the
open-file limit raised (clients and servers inherit it from this process).

``--only broadcast,latency`` runs some of them. Diagnostics (not in the default run):
``--py-spy DIR`` profiles the servers after the measurements; ``--redis-commands N``
counts, with ``MONITOR``, the Redis commands that N echoes cause; ``--remote-first``
patches the durable servers to send to other processes before their own sockets.

Prints a table and writes ``bench/results/cluster-<timestamp>.json`` (and
``cluster-latest.json``); ``bench/results/`` is not in git. It deletes its own Redis
keys (by prefix) when done and never flushes Redis.
"""

from __future__ import annotations

import cluster_broadcast
import cluster_failover
import cluster_latency
from harness import cluster

if __name__ == "__main__":
    cluster.main(
        [cluster_latency.SCENARIO, cluster_broadcast.SCENARIO, cluster_failover.SCENARIO],
        __doc__ or "",
        "cluster",
    )
