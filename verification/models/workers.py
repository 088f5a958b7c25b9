"""Worker heartbeats (readiness)."""

from __future__ import annotations

from django.db import models

from verification.models.base import (
    TimeStamped,
)


class WorkerHeartbeat(TimeStamped):
    """One row per Celery pool process: it answered at ``beat_at`` with ``model_version`` loaded.

    Each pool process upserts its row every ``WORKER_HEARTBEAT_INTERVAL_SECONDS`` from a thread
    started at process start (``verification/monitoring/heartbeat.py``); ``/readyz`` needs one younger
    than ``WORKER_HEARTBEAT_MAX_AGE_SECONDS`` with a model, and ``/metrics`` lists the fresh ones. Rows
    of processes that died stop beating and are pruned after a day.
    """

    # The Celery node name and the process id, "celery@host:1234": unique per live process.
    worker = models.CharField(max_length=200, unique=True)
    # Empty while the process has not loaded the model (``model_error`` says why, if it failed).
    model_version = models.CharField(max_length=64, blank=True, default="")
    model_error = models.CharField(max_length=500, blank=True, default="")
    beat_at = models.DateTimeField()

    class Meta:
        ordering = ["worker"]
        indexes = [
            # workers_fresh (/readyz, /metrics): "heartbeats since T"; pruning: "older than T".
            models.Index(fields=["beat_at"], name="worker_heartbeat_beat_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.worker} ({self.model_version or 'no model'})"
