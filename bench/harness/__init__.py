"""The shared harness of the benchmark scripts in ``bench/`` (never part of the tests).

Every scenario script in ``bench/`` is run as ``python bench/<script>.py`` from the
repository root; Python then puts ``bench/`` first on ``sys.path``, so ``import
harness`` works with no path edits. The harness never imports ``tests``: the few pieces
the benchmarks share with the test suite (a daphne subprocess, a private
``redis-server``, a migrated database) have their own small copies here, so the tests
can be reorganised without breaking the benchmarks and the benchmarks never end up in a
test run.

- :mod:`harness.measure`: reading a process (VmRSS, CPU time, open-file limit),
  percentiles, the fd limit of the bench itself;
- :mod:`harness.servers`: daphne processes serving the bench apps (``benchapp``,
  ``clusterapp``, the plain-Channels baseline) or the test application, and their
  ``/bench/`` control endpoints;
- :mod:`harness.redis_tools`: the shared Redis (key prefixes, ``MONITOR`` counts) and
  private ``redis-server`` processes;
- :mod:`harness.databases`: migrated SQLite files and PostgreSQL databases for servers;
- :mod:`harness.clients`: client processes holding many WebSocket connections and
  timestamping arrivals (one ``time.monotonic_ns`` clock for the whole machine);
- :mod:`harness.variants`: the single-process broadcast and memory runner of
  ``core_bench.py`` and ``history_bench.py``;
- :mod:`harness.profile`: ``py-spy`` attached to servers (``--py-spy DIR``);
- :mod:`harness.report`: logging, number formats, machine information, result files.
"""
