"""Readiness: can this site decide a check-in now? Database, broker, and a worker with the model.

Each check answers with a short, fixed detail; what went wrong (host names, driver messages) goes to
the log only, since ``/readyz`` is reachable by anyone who reaches the web process.

Without a broker (``CELERY_BROKER_URL`` empty, the laptop mode) tasks run inside the web process: there
is no broker to reach and no worker to wait for, and readiness says so (``mode: in_process``) instead
of pretending a worker answered. The model then loads in the web process on the first check-in.
"""
from __future__ import annotations

import logging
import sys
from dataclasses import dataclass

from django.conf import settings
from django.db import DatabaseError, connection

from verification import selectors

logger = logging.getLogger(__name__)

# Seconds a broker may take to answer before it counts as unreachable.
BROKER_TIMEOUT_SECONDS = 2

MODE_CELERY = "celery"
MODE_IN_PROCESS = "in_process"


@dataclass(frozen=True)
class Component:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class Readiness:
    mode: str
    components: tuple[Component, ...]
    # Messages waiting in the task queue; None in-process or when the broker did not answer.
    queue_depth: int | None

    @property
    def ok(self) -> bool:
        return all(component.ok for component in self.components)

    @property
    def failing(self) -> list[str]:
        return [component.name for component in self.components if not component.ok]

    def as_dict(self) -> dict:
        return {
            "status": "ready" if self.ok else "unavailable",
            "mode": self.mode,
            "failing": self.failing,
            "components": {c.name: {"ok": c.ok, "detail": c.detail} for c in self.components},
        }


def task_mode() -> str:
    return MODE_IN_PROCESS if settings.CELERY_TASK_ALWAYS_EAGER else MODE_CELERY


def queue_name() -> str:
    return getattr(settings, "CELERY_TASK_DEFAULT_QUEUE", "celery")


def database_check() -> Component:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError:
        logger.warning("readiness: the database did not answer", exc_info=True)
        return Component("database", False, "unreachable")
    return Component("database", True, "answered")


def broker_queue_depth() -> int:
    """Messages waiting in the default queue (Redis: LLEN). Raises when the broker does not answer."""
    from kombu import Connection
    from kombu.exceptions import ChannelError

    options = {
        **getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {}),
        "max_retries": 0,
        "socket_timeout": BROKER_TIMEOUT_SECONDS,
        "socket_connect_timeout": BROKER_TIMEOUT_SECONDS,
    }
    with Connection(settings.CELERY_BROKER_URL, connect_timeout=BROKER_TIMEOUT_SECONDS, transport_options=options) as conn:
        channel = conn.default_channel
        try:
            _, depth, _ = channel.queue_declare(queue=queue_name(), passive=True)
        except ChannelError:
            return 0  # no such queue yet: Redis holds no key for an empty list
        return int(depth)


def broker_check() -> tuple[Component, int | None]:
    if task_mode() == MODE_IN_PROCESS:
        return Component("broker", True, "not configured: tasks run in-process"), None
    try:
        depth = broker_queue_depth()
    except Exception:  # noqa: BLE001 - any failure to reach the broker means not ready; the log says which
        logger.warning("readiness: the broker did not answer", exc_info=True)
        return Component("broker", False, "unreachable"), None
    return Component("broker", True, "answered"), depth


def workers_check(*, database_ok: bool) -> Component:
    if task_mode() == MODE_IN_PROCESS:
        # Never import the model bridge here: only report what this process already did.
        inference = sys.modules.get("verification.inference")
        version = inference.loaded_model_version() if inference is not None else ""
        loaded = f"model {version} loaded in this process" if version else "the model loads on the first check-in"
        return Component("workers", True, f"in-process mode, no worker: {loaded}")
    if not database_ok:
        return Component("workers", False, "unknown: heartbeats live in the database")
    max_age = settings.WORKER_HEARTBEAT_MAX_AGE_SECONDS
    try:
        fresh = selectors.workers_fresh(max_age_seconds=max_age)
    except DatabaseError:
        logger.warning("readiness: worker heartbeats could not be read", exc_info=True)
        return Component("workers", False, "unknown: heartbeats could not be read")
    loaded = [worker for worker in fresh if worker.model_version]
    if loaded:
        return Component("workers", True, f"{len(loaded)} worker process(es) with the model answered within {max_age} s")
    if fresh:
        return Component("workers", False, f"{len(fresh)} worker process(es) answered within {max_age} s, none has the model loaded")
    return Component("workers", False, f"no worker answered within {max_age} s")


def readiness() -> Readiness:
    database = database_check()
    broker, depth = broker_check()
    workers = workers_check(database_ok=database.ok)
    return Readiness(mode=task_mode(), components=(database, broker, workers), queue_depth=depth)
