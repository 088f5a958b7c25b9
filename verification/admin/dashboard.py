"""The admin's front page: today at the doors, what needs someone now, and whether the workers keep up.

A view of selectors and of the readiness checks ``/readyz`` uses (issue 11, item 2; ARCHITECTURE.md: "the
dashboard is a view of selectors, not of raw queries"). Each part is shown only to users who may see
what it counts: check-in figures with ``view_checkin``, lockouts with ``view_lockout``, photos waiting
for the face check with ``view_person``; the health of the queue and the workers to every staff user.
Every figure links to the list it counts, filtered the same way.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from verification import roles, selectors
from verification.formatting import duration_text, local_timestamp
from verification.models import CheckIn, Lockout
from verification.monitoring import readiness

# Tasks waiting in the broker from which the queue shows amber: a worker decides a check-in in well
# under a second, so a hundred waiting means the workers are not keeping up.
QUEUE_WARN = 100


@dataclass(frozen=True)
class Figure:
    """One number on the dashboard; ``tone`` is "", "good", "warn" or "bad"."""

    label: str
    value: int | str
    url: str = ""
    tone: str = ""
    note: str = ""


@dataclass(frozen=True)
class Dashboard:
    as_of: str
    day_label: str = ""
    today: list[Figure] = field(default_factory=list)
    refused: list[Figure] = field(default_factory=list)
    attention: list[Figure] = field(default_factory=list)
    lockouts: list[Figure] = field(default_factory=list)
    health: list[Figure] = field(default_factory=list)
    workers: list[Figure] = field(default_factory=list)


def _may(request: HttpRequest, codename: str) -> bool:
    return request.user.has_perm(roles.perm(codename))


def _url(name: str, **query: object) -> str:
    url = reverse(name)
    return f"{url}?{urlencode(query)}" if query else url


def dashboard_for(request: HttpRequest, *, at: datetime | None = None) -> Dashboard:
    now = at or timezone.now()
    parts: dict[str, list[Figure]] = {}
    day_label = ""
    if _may(request, "view_checkin"):
        since, until = selectors.local_day(at=now)
        day_label = f"since {local_timestamp(since)}"
        parts |= _checkin_parts(selectors.checkins_summary(since=since, until=until), since, now,
                                may_review=_may(request, roles.REVIEW_CHECKINS))
    attention = parts.pop("attention", [])
    if _may(request, "view_person"):
        pending = selectors.references_pending_count()
        attention.append(Figure(
            "Photos waiting for the face check", pending,
            _url("admin:verification_person_changelist", photos="pending"),
            tone="warn" if pending else "",
        ))
    lockouts: list[Figure] = []
    if _may(request, "view_lockout"):
        in_force = list(selectors.lockouts_in_force())
        attention.append(Figure(
            "Locked out now", len(in_force), _url("admin:verification_lockout_changelist", in_force="yes"),
            tone="bad" if in_force else "good",
        ))
        lockouts = [_lockout_figure(lockout, now) for lockout in in_force]
    health, workers = _health_parts(now)
    return Dashboard(
        as_of=local_timestamp(now), day_label=day_label, today=parts.get("today", []),
        refused=parts.get("refused", []), attention=attention, lockouts=lockouts, health=health, workers=workers,
    )


def _checkin_parts(
    summary: selectors.CheckinSummary, since: datetime, now: datetime, *, may_review: bool
) -> dict[str, list[Figure]]:
    local = timezone.localtime(since)
    day = {"created_at__year": local.year, "created_at__month": local.month, "created_at__day": local.day}
    checkins = "admin:verification_checkin_changelist"
    today = [
        Figure("Check-ins", summary.total, _url(checkins, **day)),
        Figure("Admitted", summary.admitted, _url(checkins, **day, decision__exact=1), tone="good"),
        Figure("Refused", summary.refused_total, _url(checkins, **day, decision__exact=0),
               tone="warn" if summary.refused_total else ""),
        Figure("Failed", summary.failed, _url(checkins, **day, status__exact=CheckIn.Status.FAILED),
               tone="bad" if summary.failed else ""),
        Figure("Not decided yet", summary.undecided + summary.in_review,
               note=f"{summary.in_review} of them waiting for a guard" if summary.in_review else ""),
    ]
    labels = dict(CheckIn.Reason.choices)
    refused = [
        Figure(labels.get(reason, reason), rows, _url(checkins, **day, decision__exact=0, reason__exact=reason),
               note=reason)
        for reason, rows in summary.refused.items()
    ]
    queue = selectors.checkins_review_queue()
    # Guards and security officers go to the review queue itself (admin/reviews.py); others to the list.
    review_url = (_url("admin:verification_checkinreview_changelist") if may_review
                  else _url(checkins, status__exact=CheckIn.Status.REVIEW))
    attention = [Figure(
        "Reviews waiting", queue.waiting, review_url,
        tone="warn" if queue.waiting else "good",
        note=f"oldest waiting {duration_text((now - queue.oldest_started_at).total_seconds())}"
        if queue.oldest_started_at else "",
    )]
    return {"today": today, "refused": refused, "attention": attention}


def _lockout_figure(lockout: Lockout, now: datetime) -> Figure:
    return Figure(
        f"{lockout.get_scope_display()} {lockout.label or lockout.key}",
        f"until {local_timestamp(lockout.locked_until)}",
        reverse("admin:verification_lockout_change", args=[lockout.pk]),
        tone="bad",
        note=f"ends in {duration_text((lockout.locked_until - now).total_seconds())}; level {lockout.level}, "
        f"{lockout.failures} refusals",
    )


def _health_parts(now: datetime) -> tuple[list[Figure], list[Figure]]:
    """The broker's queue and the workers, read as ``/readyz`` reads them."""
    broker, depth = readiness.broker_check()
    if readiness.task_mode() == readiness.MODE_IN_PROCESS:
        queue = Figure("Task queue", "none", note="no broker: tasks run inside the web process")
    elif depth is None:
        queue = Figure("Task queue", "unreachable", tone="bad", note=broker.detail)
    else:
        queue = Figure("Task queue", depth, tone="warn" if depth >= QUEUE_WARN else "good",
                       note="tasks waiting in the broker")
    worker_check = readiness.workers_check(database_ok=True)
    health = [queue, Figure("Workers", "ready" if worker_check.ok else "not ready",
                            tone="good" if worker_check.ok else "bad", note=worker_check.detail)]
    oldest = selectors.checkin_oldest_undecided_at()
    if oldest is not None:
        age = (now - oldest).total_seconds()
        health.append(Figure(
            "Oldest check-in not yet decided", duration_text(age),
            tone="bad" if age > settings.CHECKIN_STUCK_AFTER_SECONDS else "",
        ))
    fresh = selectors.workers_fresh(max_age_seconds=settings.WORKER_HEARTBEAT_MAX_AGE_SECONDS, at=now)
    workers = [
        Figure(worker.worker, worker.model_version or "model not loaded",
               tone="good" if worker.model_version else "bad",
               note=worker.model_error or f"answered {duration_text((now - worker.beat_at).total_seconds())} ago")
        for worker in fresh
    ]
    return health, workers
