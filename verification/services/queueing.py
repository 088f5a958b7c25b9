"""Queueing Celery tasks by id, after commit, without ever losing the database row."""
from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def enqueue(task_name: str, object_id: int) -> bool:
    """Queue a task by id. A broker that is down is logged, not raised: the row waits for the sweep."""
    from verification import tasks

    try:
        getattr(tasks, task_name).delay(object_id)
    except Exception:  # noqa: BLE001 - kombu raises many types when the broker is unreachable
        logger.exception("could not queue %s(%s); the sweep will retry", task_name, object_id)
        return False
    return True
