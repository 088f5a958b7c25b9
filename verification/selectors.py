"""Reads with rules. No writes here."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, time, timedelta

import numpy as np
from django.db.models import Count, DurationField, ExpressionWrapper, F, Min, OuterRef, Q, QuerySet, Subquery, Sum
from django.utils import timezone

from verification.formatting import local_timestamp
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


# --- The admin's dashboard, person page and audit entry page (issue 11, item 2) ---


def local_day(*, at: datetime | None = None) -> tuple[datetime, datetime]:
    """Start and end of the site's local day (``TIME_ZONE``) holding ``at``: [midnight, next midnight)."""
    zone = timezone.get_current_timezone()
    day = timezone.localtime(at or timezone.now(), zone).date()
    return (
        datetime.combine(day, time.min, tzinfo=zone),
        datetime.combine(day + timedelta(days=1), time.min, tzinfo=zone),
    )


@dataclass(frozen=True)
class CheckinSummary:
    """Check-ins received in [since, until), by outcome; ``refused`` maps reason -> rows, largest first."""

    since: datetime
    until: datetime
    total: int
    admitted: int
    refused: dict[str, int]
    failed: int
    in_review: int
    undecided: int

    @property
    def refused_total(self) -> int:
        return sum(self.refused.values())


def checkins_summary(*, since: datetime, until: datetime) -> CheckinSummary:
    """Check-ins received in [since, until) counted by outcome (one GROUP BY)."""
    rows = (
        CheckIn.objects.filter(created_at__gte=since, created_at__lt=until)
        .order_by()
        .values_list("status", "decision", "reason")
        .annotate(rows=Count("pk"))
    )
    counts = {"total": 0, "admitted": 0, "failed": 0, "in_review": 0, "undecided": 0}
    refused: dict[str, int] = {}
    for status, decision, reason, rows_counted in rows:
        counts["total"] += rows_counted
        if status == CheckIn.Status.DECIDED and decision == 1:
            counts["admitted"] += rows_counted
        elif status == CheckIn.Status.DECIDED:
            refused[reason] = refused.get(reason, 0) + rows_counted
        elif status == CheckIn.Status.FAILED:
            counts["failed"] += rows_counted
        elif status == CheckIn.Status.REVIEW:
            counts["in_review"] += rows_counted
        else:
            counts["undecided"] += rows_counted
    refused = dict(sorted(refused.items(), key=lambda item: (-item[1], item[0])))
    return CheckinSummary(since=since, until=until, refused=refused, **counts)


@dataclass(frozen=True)
class ReviewQueue:
    """Check-ins waiting for a guard (status ``review``, issue 10 item 1), whenever they came in."""

    waiting: int
    oldest_started_at: datetime | None


def checkins_review_queue() -> ReviewQueue:
    row = CheckIn.objects.filter(status=CheckIn.Status.REVIEW).aggregate(
        waiting=Count("pk"), oldest=Min("review_started_at")
    )
    return ReviewQueue(waiting=row["waiting"], oldest_started_at=row["oldest"])


def references_pending_count() -> int:
    """Reference photos still waiting for the worker's face check."""
    return ReferenceImage.objects.filter(status=ReferenceImage.Status.PENDING).count()


def people_valid_now(queryset: QuerySet[Person], *, at: datetime | None = None) -> QuerySet[Person]:
    """``person_is_admitted`` as a filter: active and inside [valid_from, valid_until) at ``at``."""
    return queryset.filter(_valid_at(at or timezone.now()))


def people_not_valid_now(queryset: QuerySet[Person], *, at: datetime | None = None) -> QuerySet[Person]:
    return queryset.exclude(_valid_at(at or timezone.now()))


def _valid_at(at: datetime) -> Q:
    return (
        Q(is_active=True)
        & (Q(valid_from__isnull=True) | Q(valid_from__lte=at))
        & (Q(valid_until__isnull=True) | Q(valid_until__gt=at))
    )


def person_validity_text(*, person: Person, at: datetime | None = None) -> tuple[bool, str]:
    """(valid now?, why, in words): the person page's indicator."""
    at = at or timezone.now()
    if not person.is_active:
        return False, "No: marked inactive."
    if person.valid_from is not None and at < person.valid_from:
        return False, f"No: not valid before {local_timestamp(person.valid_from)}."
    if person.valid_until is not None and at >= person.valid_until:
        return False, f"No: validity ended {local_timestamp(person.valid_until)}."
    if person.valid_until is not None:
        return True, f"Yes: active, valid until {local_timestamp(person.valid_until)}."
    return True, "Yes: active, no end date."


def lockout_keys_in_force(*, scope: str, at: datetime | None = None) -> QuerySet:
    """The keys (claimed external IDs, device ids) with a lockout in force now, as a subquery."""
    at = at or timezone.now()
    return Lockout.objects.filter(scope=scope, unlocked_at__isnull=True, locked_until__gt=at).values("key")


def person_lockout_in_force(*, person: Person, at: datetime | None = None) -> Lockout | None:
    """The lockout of the person's external ID in force now (the longest, should there be two), or None."""
    at = at or timezone.now()
    return (
        Lockout.objects.filter(
            scope=Lockout.Scope.PERSON, key=person.external_id, unlocked_at__isnull=True, locked_until__gt=at
        )
        .order_by("-locked_until", "-pk")
        .first()
    )


def person_recent_checkins(*, person: Person, limit: int = 10) -> list[CheckIn]:
    """The newest check-ins that claimed the person's external ID (or were linked to them)."""
    return list(
        CheckIn.objects.filter(Q(claimed_external_id=person.external_id) | Q(person=person))
        .select_related("device")
        .order_by("-created_at", "-pk")[:limit]
    )


@dataclass(frozen=True)
class ReferenceScore:
    """One reference photo's score in a decision; ``reference`` is None when the photo was deleted since."""

    reference_id: int
    score: float
    best: bool
    reference: ReferenceImage | None


def decision_reference_scores(*, detail: dict) -> list[ReferenceScore]:
    """Every reference's score recorded in a decision's audit detail (``reference_scores``), best first."""
    recorded = detail.get("reference_scores") or []
    pairs = []
    for item in recorded:
        try:
            pairs.append((int(item["reference_id"]), float(item["score"])))
        except (KeyError, TypeError, ValueError):
            continue
    if not pairs:
        return []
    best_id = detail.get("best_reference_id")
    references = ReferenceImage.objects.in_bulk([reference_id for reference_id, _ in pairs])
    pairs.sort(key=lambda pair: -pair[1])
    return [
        ReferenceScore(reference_id=reference_id, score=score, best=reference_id == best_id,
                       reference=references.get(reference_id))
        for reference_id, score in pairs
    ]


def people_with_lockout_until(queryset: QuerySet[Person], *, at: datetime | None = None) -> QuerySet[Person]:
    """Annotate ``lockout_until``: when the lockout of the person's external ID in force now ends (or None)."""
    at = at or timezone.now()
    in_force = Lockout.objects.filter(
        scope=Lockout.Scope.PERSON, key=OuterRef("external_id"), unlocked_at__isnull=True, locked_until__gt=at
    ).order_by("-locked_until")
    return queryset.annotate(lockout_until=Subquery(in_force.values("locked_until")[:1]))


def checkin_lockout(*, checkin: CheckIn) -> Lockout | None:
    """The lockout that refused a ``locked_out`` check-in: of its claimed person or its device, in force when
    it was decided (the one ending last, should both be). None if it cannot be found (erased since)."""
    at = checkin.decided_at or checkin.created_at
    in_force = (
        Q(created_at__lte=at, locked_until__gt=at)
        & (Q(unlocked_at__isnull=True) | Q(unlocked_at__gt=at))
        & (Q(scope=Lockout.Scope.PERSON, key=checkin.claimed_external_id)
           | Q(scope=Lockout.Scope.DEVICE, key=str(checkin.device_id)))
    )
    return Lockout.objects.filter(in_force).order_by("-locked_until", "-pk").first()
