"""Worker heartbeats: each Celery pool process records that it is alive and which model it loaded.

Written by the heartbeat thread of every pool process (``verification/monitoring/heartbeat.py``); read
by ``/readyz`` and ``/metrics`` through ``selectors.workers_fresh``.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from verification.models import WorkerHeartbeat

# Rows of processes that stopped beating (killed, scaled down) are deleted after this long.
HEARTBEAT_KEEP = timedelta(days=1)


@transaction.atomic
def worker_heartbeat_record(
    *, worker: str, model_version: str, model_error: str = "", at: datetime | None = None
) -> WorkerHeartbeat:
    """Upsert ``worker``'s row: alive at ``at`` (now) with ``model_version`` loaded ("" = not loaded)."""
    at = at or timezone.now()
    heartbeat = WorkerHeartbeat.objects.select_for_update().filter(worker=worker).first() or WorkerHeartbeat(worker=worker)
    heartbeat.model_version = model_version
    heartbeat.model_error = model_error[: WorkerHeartbeat._meta.get_field("model_error").max_length]
    heartbeat.beat_at = at
    heartbeat.full_clean(validate_unique=False)
    heartbeat.save()
    return heartbeat


def worker_heartbeat_remove(*, worker: str) -> None:
    """Forget ``worker`` (its process is shutting down cleanly)."""
    WorkerHeartbeat.objects.filter(worker=worker).delete()


def worker_heartbeats_prune(*, at: datetime | None = None) -> int:
    """Delete heartbeats older than ``HEARTBEAT_KEEP``; return how many."""
    at = at or timezone.now()
    deleted, _ = WorkerHeartbeat.objects.filter(beat_at__lt=at - HEARTBEAT_KEEP).delete()
    return deleted
