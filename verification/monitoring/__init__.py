"""Health, readiness and Prometheus metrics (issue 11, item 3).

- ``middleware.ProbeMiddleware`` answers ``/healthz`` (the process is alive; touches nothing) and
  ``/readyz`` (database, broker, a worker with the model loaded) ahead of every other middleware.
- ``views.metrics`` serves ``/metrics`` to a bearer token (``METRICS_TOKEN``) or an allowed network.
- ``readiness`` runs the checks; ``metrics`` turns the database and the broker into the exposition at
  scrape time, so every gunicorn and Celery process reports the same numbers (no in-process counters).
- ``heartbeat`` is the worker side: a thread per pool process that records it is alive, with its model.

Nothing here imports ``ml`` or TensorFlow; the web process serves all three endpoints.
"""
