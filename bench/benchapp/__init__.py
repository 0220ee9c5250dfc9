"""Django settings and ASGI applications of the single-process benchmarks
(``bench/core_bench.py``, ``history_bench.py``, ``many_objects.py``, ``overload_bench.py``).

Three ASGI applications serve the same WebSocket protocol so the benchmark can compare
them on one daphne process each:

- ``benchapp.asgi_raw:application``: a bare ASGI app (the floor);
- ``benchapp.asgi_channels:application``: a stock Channels ``AsyncWebsocketConsumer``
  joined to one group on the in-memory channel layer;
- ``benchapp.asgi_durable:application``: a ``django_durable.DurableConsumer``.

Protocol (text frames): ``warmup`` is answered with ``warm``; ``bcast:<n>`` makes the
server send ``b:<n>`` to every socket (of the room). Every application also serves the
HTTP control endpoints of :mod:`benchapp.control` under ``/bench/``.
"""
