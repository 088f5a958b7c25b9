"""Worker heartbeats: each Celery pool process says, every few seconds, that it is alive and which model
it has loaded (a ``WorkerHeartbeat`` row, ``services.worker_heartbeat_record``).

``verification.tasks`` starts the thread when a pool process starts (after it tried to load the model)
and stops it when the process exits. A thread rather than a beat task: a periodic task reaches one
worker, not each of them, and a process busy with a long verification still answers here. A process
whose model failed to load keeps beating with no model version and the error, so ``/readyz`` can tell
"no worker" from "workers without a model"; the first task retries the load, and the next beat says so.
"""
from __future__ import annotations

import logging
import os
import socket
import threading

from django.conf import settings
from django.db import close_old_connections, connection

from verification import services

logger = logging.getLogger(__name__)

# Prune rows of dead processes once every this many beats (about an hour at the default interval).
_PRUNE_EVERY_BEATS = 240

_stop = threading.Event()
_thread: threading.Thread | None = None
_worker = ""


def worker_name(hostname: str | None) -> str:
    """The row's key: the Celery node name (``celery@host``) and this process's id."""
    return f"{hostname or 'celery@' + socket.gethostname()}:{os.getpid()}"


def beat_once(*, worker: str, model_error: str = "") -> None:
    """Record one heartbeat for ``worker`` with the model this process has loaded now."""
    from verification import inference  # worker side only: the web process never gets here

    version = inference.loaded_model_version()
    services.worker_heartbeat_record(worker=worker, model_version=version, model_error="" if version else model_error)


def heartbeat_start(*, hostname: str | None, model_error: str = "") -> None:
    """Start this process's heartbeat thread (once); ``model_error`` says why the model did not load."""
    global _thread, _worker
    if _thread is not None and _thread.is_alive():
        return
    _worker = worker_name(hostname)
    _stop.clear()
    _thread = threading.Thread(target=_run, args=(_worker, model_error), name="worker-heartbeat", daemon=True)
    _thread.start()


def heartbeat_stop() -> None:
    """Stop the thread and delete this process's row, so readiness stops counting it at once."""
    global _thread
    _stop.set()
    if _thread is not None:
        _thread.join(timeout=5)
        _thread = None
    if _worker:
        try:
            services.worker_heartbeat_remove(worker=_worker)
        except Exception:  # noqa: BLE001 - shutting down: the row ages out of readiness anyway
            logger.warning("could not remove the heartbeat of %s", _worker, exc_info=True)


def _run(worker: str, model_error: str) -> None:
    beats = 0
    while True:
        # As Django does around each request: drop a connection that is broken or past CONN_MAX_AGE.
        close_old_connections()
        try:
            beat_once(worker=worker, model_error=model_error)
            if beats % _PRUNE_EVERY_BEATS == 0:
                services.worker_heartbeats_prune()
        except Exception:  # noqa: BLE001 - database away: readiness shows the missing beat; try again
            logger.warning("worker heartbeat of %s not recorded", worker, exc_info=True)
        beats += 1
        if _stop.wait(settings.WORKER_HEARTBEAT_INTERVAL_SECONDS):
            break
    connection.close()
