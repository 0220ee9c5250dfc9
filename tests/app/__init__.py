"""The Django app the test suite's settings point at (URLs, ASGI application, routing)."""
