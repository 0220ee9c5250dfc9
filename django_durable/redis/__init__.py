"""Everything django-durable keeps in, and sends through, Redis.

- :mod:`~django_durable.redis.keys`: every key name; :mod:`~.scripts`: the Lua scripts;
  :mod:`~.records`: what is stored, packed and unpacked (read back as hostile data).
- :mod:`~.layer` and :mod:`~.leases`: the session layer (``RedisSessionLayer``):
  sockets, settings, history, and which process owns each object.
- :mod:`~.status`: every object with sockets or a lease, for the status views.

Importing this package needs the ``redis`` extra (``pip install
"django-durable-objects[redis]"``); nothing else in the package imports it unless a
Redis layer is configured.
"""
