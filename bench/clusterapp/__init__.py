"""Django project of the cluster scenarios (``bench/cluster_*.py``): several daphne
processes on one Redis.

Run as ``PYTHONPATH=.:bench DJANGO_SETTINGS_MODULE=clusterapp.settings python -m daphne
... clusterapp.asgi:application``; the environment variables read by
:mod:`clusterapp.settings` choose the layers (Redis or in-memory), the key prefix and
the lease time.
"""
