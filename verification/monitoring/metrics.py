"""The Prometheus exposition, computed at scrape time from the database and the broker.

Gunicorn runs several web processes and each worker container several Celery processes: a counter kept
in one process's memory would count only what that process saw, and a scrape would land on any one of
them. So nothing here counts in memory. Every scrape builds a fresh registry whose collector reads the
shared sources: check-in rows (cumulative counts by decision and reason, and the decision latency
histogram from ``created_at`` / ``decided_at``), lockout rows, worker heartbeat rows, and the broker's
queue length. Any process, any scrape, gives the same numbers; a row deleted by hand lowers a counter,
which Prometheus treats as a counter reset.

The review queue (issue 10, item 1): ``accesscontrol_reviews_waiting`` (check-ins waiting for a guard now),
``accesscontrol_review_oldest_age_seconds`` (how long the oldest has waited: alert well before
``REVIEW_TIMEOUT_SECONDS``) and ``accesscontrol_reviews_ended_total`` by outcome (admit, refuse, timeout;
a rising timeout rate means nobody is watching the queue).
"""
from __future__ import annotations

import logging
from collections.abc import Iterator

from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)

from verification import selectors
from verification.models import CheckIn
from verification.monitoring import readiness as readiness_checks

logger = logging.getLogger(__name__)

PREFIX = "accesscontrol"

# Seconds from receipt to decision (queue wait + detection + embedding + scoring). A warm worker decides
# in well under a second; the upper buckets catch a backlog or a cold start.
LATENCY_BUCKETS_SECONDS: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 300.0)

ADMITTED, REFUSED = "admitted", "refused"


def exposition() -> bytes:
    """The text exposition of every metric, read now from the shared sources."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SiteCollector())
    return generate_latest(registry)


class SiteCollector:
    """A prometheus_client collector over the database and the broker (no state of its own)."""

    def collect(self) -> Iterator[Metric]:
        ready = readiness_checks.readiness()
        yield from _readiness_metrics(ready)
        if "database" in ready.failing:
            return  # the rest comes from the database; accesscontrol_up says why it is missing
        try:
            yield from _database_metrics()
        except DatabaseError:
            logger.warning("metrics: the database failed during the scrape", exc_info=True)


def _readiness_metrics(ready: readiness_checks.Readiness) -> Iterator[Metric]:
    up = GaugeMetricFamily(f"{PREFIX}_up", "1 when the component answered (database, broker, workers), as /readyz.",
                           labels=["component"])
    for component in ready.components:
        up.add_metric([component.name], 1.0 if component.ok else 0.0)
    yield up
    yield InfoMetricFamily(f"{PREFIX}_task_mode", "How tasks run: celery (workers via the broker) or in_process.",
                           value={"mode": ready.mode})
    if ready.queue_depth is not None:
        depth = GaugeMetricFamily(f"{PREFIX}_queue_depth", "Tasks waiting in the broker's queue.", labels=["queue"])
        depth.add_metric([readiness_checks.queue_name()], float(ready.queue_depth))
        yield depth


def _database_metrics() -> Iterator[Metric]:
    now = timezone.now()
    counts = selectors.checkin_counts()
    yield CounterMetricFamily(f"{PREFIX}_checkins", "Check-ins received.", value=counts.total)

    decisions = CounterMetricFamily(
        f"{PREFIX}_decisions", "Check-ins decided, by decision (admitted, refused) and refusal reason.",
        labels=["decision", "reason"],
    )
    # Every reason appears from the first scrape (at 0), so rate() sees its first refusal.
    by_reason = {(ADMITTED, ""): 0} | {(REFUSED, reason.value): 0 for reason in CheckIn.Reason if reason.value}
    for (decision, reason), rows in counts.decisions.items():
        key = (ADMITTED, "") if decision == 1 else (REFUSED, reason)
        by_reason[key] = by_reason.get(key, 0) + rows
    for (decision, reason), rows in sorted(by_reason.items()):
        decisions.add_metric([decision, reason], rows)
    yield decisions

    failed = CounterMetricFamily(f"{PREFIX}_checkins_failed", "Check-ins that failed processing, by reason.",
                                 labels=["reason"])
    for reason, rows in sorted(({CheckIn.Reason.PROCESSING_ERROR.value: 0} | counts.failed).items()):
        failed.add_metric([reason], rows)
    yield failed

    undecided = GaugeMetricFamily(f"{PREFIX}_checkins_undecided", "Check-ins waiting for a decision now, by status.",
                                  labels=["status"])
    for status, rows in sorted(counts.undecided.items()):
        undecided.add_metric([status], rows)
    yield undecided
    oldest = selectors.checkin_oldest_undecided_at()
    yield GaugeMetricFamily(
        f"{PREFIX}_checkin_oldest_undecided_age_seconds",
        "Age of the oldest check-in still pending or processing (0 when none).",
        value=max(0.0, (now - oldest).total_seconds()) if oldest else 0.0,
    )

    latency = selectors.decision_latency_histogram(bounds=LATENCY_BUCKETS_SECONDS)
    yield HistogramMetricFamily(
        f"{PREFIX}_decision_latency_seconds",
        "Seconds from receiving a check-in to its decision (queue wait included), every decided check-in.",
        buckets=[(_le(bound), count) for bound, count in zip(latency.bounds, latency.cumulative)]
        + [("+Inf", latency.count)],
        sum_value=latency.sum_seconds,
    )

    yield from _review_metrics(now)

    lockouts = GaugeMetricFamily(f"{PREFIX}_lockouts_in_force", "Lockouts in force now, by scope (person, device).",
                                 labels=["scope"])
    for scope, rows in sorted(selectors.lockouts_in_force_by_scope(at=now).items()):
        lockouts.add_metric([scope], rows)
    yield lockouts

    yield from _worker_metrics(now)


def _review_metrics(now) -> Iterator[Metric]:  # noqa: ANN001 - datetime
    reviews = selectors.review_stats()
    yield GaugeMetricFamily(f"{PREFIX}_reviews_waiting", "Check-ins in the review band waiting for a guard now.",
                            value=reviews.waiting)
    yield GaugeMetricFamily(
        f"{PREFIX}_review_oldest_age_seconds",
        "Seconds the oldest check-in waiting for a guard has waited (0 when none); at REVIEW_TIMEOUT_SECONDS it "
        "becomes review_timeout.",
        value=max(0.0, (now - reviews.oldest_started_at).total_seconds()) if reviews.oldest_started_at else 0.0,
    )
    ended = CounterMetricFamily(f"{PREFIX}_reviews_ended", "Reviews ended, by outcome: a guard admitted or refused, "
                                "or nobody answered in time (timeout).", labels=["outcome"])
    for outcome, rows in sorted(reviews.ended.items()):
        ended.add_metric([outcome], rows)
    yield ended


def _worker_metrics(now) -> Iterator[Metric]:  # noqa: ANN001 - datetime
    fresh = selectors.workers_fresh(max_age_seconds=settings.WORKER_HEARTBEAT_MAX_AGE_SECONDS, at=now)
    yield GaugeMetricFamily(
        f"{PREFIX}_workers_ready",
        "Worker processes with the model loaded whose heartbeat is fresh (WORKER_HEARTBEAT_MAX_AGE_SECONDS).",
        value=sum(1 for worker in fresh if worker.model_version),
    )
    info = InfoMetricFamily(f"{PREFIX}_worker", "Worker processes with a fresh heartbeat and the model version each "
                            "loaded (empty: not loaded).", labels=["worker"])
    age = GaugeMetricFamily(f"{PREFIX}_worker_heartbeat_age_seconds", "Seconds since each fresh worker's heartbeat.",
                            labels=["worker"])
    for worker in fresh:
        info.add_metric([worker.worker], {"model_version": worker.model_version})
        age.add_metric([worker.worker], max(0.0, (now - worker.beat_at).total_seconds()))
    yield info
    yield age


def _le(bound: float) -> str:
    return repr(float(bound))
