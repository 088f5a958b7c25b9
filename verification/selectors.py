"""Reads with rules. No writes here."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from django.db.models import Count, DurationField, ExpressionWrapper, F, Min, Q, QuerySet, Sum
from django.utils import timezone

from verification.models import AuditCheck, CheckIn, Device, Lockout, Person, ReferenceImage, WorkerHeartbeat


def token_hash(raw_token: str) -> str:
    return hashlib.sha256(raw_token.encode()).hexdigest()


def device_by_token(*, raw_token: str) -> Device | None:
    """The active (not revoked) device holding this token, or None."""
    if not raw_token:
        return None
    return Device.objects.filter(token_hash=token_hash(raw_token), revoked_at__isnull=True).first()


def person_by_external_id(*, external_id: str) -> Person | None:
    return Person.objects.filter(external_id=external_id).first()


def person_is_admitted(*, person: Person, at: datetime | None = None) -> bool:
    """Active and inside the optional validity window [valid_from, valid_until)."""
    at = at or timezone.now()
    if not person.is_active:
        return False
    if person.valid_from is not None and at < person.valid_from:
        return False
    if person.valid_until is not None and at >= person.valid_until:
        return False
    return True


def references_ready(*, person: Person, model_version: str) -> list[ReferenceImage]:
    """Ready references embedded by this model version (another model's embeddings are not comparable)."""
    return list(
        ReferenceImage.objects.filter(
            person=person, status=ReferenceImage.Status.READY, model_version=model_version
        ).order_by("pk")
    )


def references_stale(*, model_version: str) -> QuerySet[ReferenceImage]:
    """Ready references whose embedding another model version computed: to be re-embedded."""
    return ReferenceImage.objects.filter(status=ReferenceImage.Status.READY).exclude(model_version=model_version)


def references_latest_model_version() -> str:
    """The model version of the most recently stored embedding: what the workers embed with now.

    The web process never loads the model (nor reads its manifest), so the admin takes the current
    version from the data: after a change the start-up sweep re-embeds within moments.
    """
    latest = (
        ReferenceImage.objects.filter(status=ReferenceImage.Status.READY, embedded_at__isnull=False)
        .order_by("-embedded_at", "-pk")
        .values_list("model_version", flat=True)
        .first()
    )
    return latest or ""


def references_progress(*, model_version: str) -> tuple[int, int]:
    """(ready references embedded by ``model_version``, all ready references)."""
    counts = ReferenceImage.objects.filter(status=ReferenceImage.Status.READY).aggregate(
        current=Count("pk", filter=Q(model_version=model_version)), total=Count("pk")
    )
    return counts["current"], counts["total"]


def embedding_from_bytes(data: bytes, dim: int) -> np.ndarray:
    vector = np.frombuffer(bytes(data), dtype="<f4")
    if vector.shape != (dim,):
        raise ValueError(f"stored embedding has {vector.size} values, expected {dim}")
    return vector


def embeddings_matrix(references: list[ReferenceImage]) -> np.ndarray:
    return np.stack([embedding_from_bytes(ref.embedding, ref.embedding_dim) for ref in references])


def checkins_for_device(*, device: Device) -> QuerySet[CheckIn]:
    return CheckIn.objects.filter(device=device).select_related("device")


def lockouts_in_force() -> QuerySet[Lockout]:
    """Lockouts in force now (not unlocked, not yet ended), newest first: the admin's banner."""
    return Lockout.objects.filter(unlocked_at__isnull=True, locked_until__gt=timezone.now()).order_by("-created_at")


def audit_check_latest() -> AuditCheck | None:
    """The newest walk of the audit chain (beat or an auditor): the admin's banner when it was broken."""
    return AuditCheck.objects.order_by("-created_at", "-pk").first()


# What a door device is told about a refusal by default (CHECKIN_RESPONSE_DETAIL=coarse; issue 9,
# item 6). Every reason decided from the claimed person's record (unknown, inactive, no references) or
# after it (face quality is checked only for a known, admitted person; no_match) is one answer, so a
# device cannot tell which badge IDs exist. A reason not listed here is ``not_recognised`` too.
DEVICE_REASON_LOCKED_OUT = "locked_out"
DEVICE_REASON_ERROR = "error"
DEVICE_REASON_NOT_RECOGNISED = "not_recognised"
# A review no guard answered in time (the door already knew it was in review): "try again or call someone".
DEVICE_REASON_REVIEW_TIMEOUT = "review_timeout"


def checkin_device_reason(*, checkin: CheckIn) -> str:
    """The coarse reason shown to the device: "" (admitted or undecided), not_recognised, locked_out,
    review_timeout, error. A guard's refusal is ``not_recognised``, as the model's."""
    if checkin.status == CheckIn.Status.FAILED:
        return DEVICE_REASON_ERROR
    if checkin.decision != 0:
        return ""
    if checkin.reason == CheckIn.Reason.LOCKED_OUT:
        return DEVICE_REASON_LOCKED_OUT
    if checkin.reason == CheckIn.Reason.REVIEW_TIMEOUT:
        return DEVICE_REASON_REVIEW_TIMEOUT
    return DEVICE_REASON_NOT_RECOGNISED


# --- Health and metrics (issue 11, item 3): what /readyz and /metrics read at request time ---


def workers_fresh(*, max_age_seconds: float, at: datetime | None = None) -> list[WorkerHeartbeat]:
    """Worker processes whose last heartbeat is younger than ``max_age_seconds``."""
    at = at or timezone.now()
    return list(WorkerHeartbeat.objects.filter(beat_at__gte=at - timedelta(seconds=max_age_seconds)))


@dataclass(frozen=True)
class CheckinCounts:
    """Check-in rows counted by state: ``decisions[(decision, reason)]``, ``failed[reason]``, ``undecided[status]``."""

    total: int
    decisions: dict[tuple[int, str], int]
    failed: dict[str, int]
    undecided: dict[str, int]


def checkin_counts() -> CheckinCounts:
    """Every check-in row counted by status, decision and reason (one GROUP BY over the table)."""
    decisions: dict[tuple[int, str], int] = {}
    failed: dict[str, int] = {}
    undecided = {CheckIn.Status.PENDING.value: 0, CheckIn.Status.PROCESSING.value: 0, CheckIn.Status.REVIEW.value: 0}
    total = 0
    rows = CheckIn.objects.order_by().values_list("status", "decision", "reason").annotate(rows=Count("pk"))
    for status, decision, reason, rows_counted in rows:
        total += rows_counted
        if status == CheckIn.Status.DECIDED:
            decisions[(decision, reason)] = decisions.get((decision, reason), 0) + rows_counted
        elif status == CheckIn.Status.FAILED:
            failed[reason] = failed.get(reason, 0) + rows_counted
        else:
            undecided[status] = undecided.get(status, 0) + rows_counted
    return CheckinCounts(total=total, decisions=decisions, failed=failed, undecided=undecided)


def reviews_waiting() -> QuerySet[CheckIn]:
    """The review queue: check-ins waiting for a guard, oldest first (``checkin_review_queue_idx``)."""
    return (
        CheckIn.objects.filter(status=CheckIn.Status.REVIEW)
        .select_related("device", "person", "best_reference")
        .order_by("review_started_at", "pk")
    )


@dataclass(frozen=True)
class ReviewStats:
    """The review queue now, and every review ended so far by how (for /metrics)."""

    waiting: int
    oldest_started_at: datetime | None
    # Ended reviews: {"admit": n, "refuse": n, "timeout": n}.
    ended: dict[str, int]


def review_stats() -> ReviewStats:
    """Waiting reviews and their oldest start (one aggregate), and ended reviews by outcome (one GROUP BY)."""
    waiting = CheckIn.objects.filter(status=CheckIn.Status.REVIEW).aggregate(
        rows=Count("pk"), oldest=Min("review_started_at")
    )
    ended = {"admit": 0, "refuse": 0, "timeout": 0}
    closed = (
        CheckIn.objects.filter(status=CheckIn.Status.DECIDED, review_started_at__isnull=False)
        .order_by().values_list("decision", "reason").annotate(rows=Count("pk"))
    )
    for decision, reason, rows in closed:
        if reason == CheckIn.Reason.REVIEW_TIMEOUT:
            ended["timeout"] += rows
        elif reason == CheckIn.Reason.GUARD_REFUSED:
            ended["refuse"] += rows
        elif decision == 1:
            ended["admit"] += rows
        # (A review that a lockout superseded never opened: it has no review_started_at.)
    return ReviewStats(waiting=waiting["rows"], oldest_started_at=waiting["oldest"], ended=ended)


def checkin_oldest_undecided_at() -> datetime | None:
    """When the oldest check-in still pending or processing was received (None when there is none)."""
    undecided = CheckIn.objects.filter(status__in=[CheckIn.Status.PENDING, CheckIn.Status.PROCESSING])
    return undecided.aggregate(oldest=Min("created_at"))["oldest"]


@dataclass(frozen=True)
class LatencyHistogram:
    """Decided check-ins by seconds from receipt to decision: ``cumulative[i]`` took at most ``bounds[i]``."""

    bounds: tuple[float, ...]
    cumulative: tuple[int, ...]
    count: int
    sum_seconds: float


def decision_latency_histogram(*, bounds: tuple[float, ...]) -> LatencyHistogram:
    """Every decided check-in's ``decided_at - created_at``, counted into cumulative ``bounds`` (one query)."""
    decided = CheckIn.objects.filter(status=CheckIn.Status.DECIDED, decided_at__isnull=False)
    latency = ExpressionWrapper(F("decided_at") - F("created_at"), output_field=DurationField())
    buckets = {
        f"le_{index}": Count("pk", filter=Q(decided_at__lte=F("created_at") + timedelta(seconds=bound)))
        for index, bound in enumerate(bounds)
    }
    row = decided.aggregate(count=Count("pk"), total=Sum(latency), **buckets)
    total: timedelta | None = row["total"]
    return LatencyHistogram(
        bounds=tuple(bounds),
        cumulative=tuple(row[f"le_{index}"] for index in range(len(bounds))),
        count=row["count"],
        sum_seconds=total.total_seconds() if total is not None else 0.0,
    )


def lockouts_in_force_by_scope(*, at: datetime | None = None) -> dict[str, int]:
    """Lockouts in force now per scope (person, device), zero for a scope without any."""
    at = at or timezone.now()
    counts = {scope.value: 0 for scope in Lockout.Scope}
    in_force = Lockout.objects.filter(unlocked_at__isnull=True, locked_until__gt=at).order_by()
    for scope, rows in in_force.values_list("scope").annotate(rows=Count("pk")):
        counts[scope] = rows
    return counts
