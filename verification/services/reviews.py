"""The review band (issue 10, item 1): a guard decides the check-ins the model is unsure about.

Three bands on the decision score over the claimed person's references (the model's rule), per reference count k:

- at or above the admit threshold (``ModelInfo.threshold_for(k)``): 1, as without the band;
- at or above the review threshold (``ModelInfo.review_threshold_for(k)``) and below the admit one:
  the check-in goes to ``review`` (:func:`checkin_review_open`); the door is told ``status: review``
  and keeps polling; a guard sees it in the admin's review queue and admits or refuses it
  (:func:`checkin_review_decide`);
- below the review threshold: 0 ``no_match``, as without the band.

Both thresholds come from calibration: the manifest's ``operating_point`` and ``review_band`` (chosen on
LFW fold 8 by ``python -m ml review-band``), or the site's own (``manage.py calibrate --apply``,
``services/thresholds.py``); every decision records both. ``REVIEW_BAND=0`` turns the band off: the
review threshold is then None and the flow is the two-band one, exactly as before.

A review nobody answers by its deadline (``REVIEW_TIMEOUT_SECONDS`` after it opened, fixed on the row)
becomes 0 ``review_timeout`` (:func:`checkin_review_expire`): from beat every
``REVIEW_SWEEP_INTERVAL_SECONDS`` (:func:`checkin_reviews_expire`, also run by the review queue page and
``manage.py sweep_checkins``), and from the door's own poll (:func:`checkin_review_lapse_if_due`), so a
site without beat still answers its doors on time. Every
path that ends a review is a conditional UPDATE ``WHERE status = 'review'``: a review ends once, by
whichever comes first; a guard who comes second is told so and changes nothing.

Audit: the model's verdict is a ``review`` entry (score, both thresholds, where they came from, the
deadline), and the check-in's one ``decision`` entry follows with the guard as its actor and
``detail.model_verdict = "review"``, ``detail.guard``, ``detail.guard_decision`` (or, for a timeout,
actor ``system`` and no guard).

A guard judges the face, not the rules: an admit for a person who was erased, deactivated or lost the
right to this door while the review waited becomes 0 with that reason (``unknown_person``,
``inactive_person``, ``not_authorized_here`` / ``outside_schedule``), the guard's choice kept in the
entry's ``superseded``.

Lockouts (``services/lockouts.py``): a guard's refusal (``guard_refused``) counts toward the claimed
person's and the device's lockout like ``no_match``: a person looked and said no, the strongest
refusal there is. A ``review_timeout`` counts toward neither: nobody judged the face, and an unstaffed
queue must not lock people out. A guard's decision is not superseded by a lockout that began while the
review waited: a lockout stops further automated tries (new check-ins are refused before any face work),
and this one is being judged by a person.
"""
from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from verification.audit import SYSTEM_ACTOR, audit_append, device_actor
from verification.models import AuditEntry, CheckIn, Person
from verification.services import lockouts, waits

if TYPE_CHECKING:
    from verification.inference import ModelInfo

logger = logging.getLogger(__name__)

Reason = CheckIn.Reason
MODEL_VERDICT_REVIEW = "review"
GUARD_DECISIONS = {1: "admit", 0: "refuse"}


def review_threshold(*, info: ModelInfo, references: int) -> float | None:
    """The review band's lower edge for a person with ``references`` ready photos; None: no band
    (``REVIEW_BAND`` off, or neither the model nor the site calibration has one)."""
    if not settings.REVIEW_BAND:
        return None
    return info.review_threshold_for(references)


def band_verdict(*, score: float, threshold: float, review_threshold: float | None) -> str:
    """``admit``, ``review`` or ``refuse`` for a mean ``score`` (admit at or above ``threshold``)."""
    if score >= threshold:
        return "admit"
    if review_threshold is not None and score >= review_threshold:
        return MODEL_VERDICT_REVIEW
    return "refuse"


def _audit(checkin: CheckIn, *, actor: str, **fields: Any) -> AuditEntry:
    return audit_append(
        actor=actor,
        checkin_id=checkin.pk,
        device_ref=checkin.device_id,
        device_name=checkin.device.name,
        person_external_id=checkin.claimed_external_id,
        **fields,
    )


@transaction.atomic
def checkin_review_open(
    *,
    checkin_id: int,
    person: Person,
    score: float,
    threshold: float,
    review_threshold: float,
    model_version: str,
    threshold_source: str = "",
    best_reference_id: int | None = None,
    timings: dict[str, float] | None = None,
    probe_embedding: bytes | None = None,
    reference_scores: list[dict[str, Any]] | None = None,
    decision_rule: str = "",
) -> bool:
    """Worker: the score fell in the band; put the check-in in review with its deadline. Idempotent:
    False if it is no longer processing. A lockout in force now decides it 0 ``locked_out`` instead,
    as ``checkin_decide`` does for any decision (the verdict stays in the entry's ``superseded``)."""
    if not review_threshold <= score < threshold:
        raise ValueError(f"score {score} is not in the review band [{review_threshold}, {threshold})")
    now = timezone.now()
    checkin = CheckIn.objects.select_for_update().select_related("device").get(pk=checkin_id)
    if checkin.status != CheckIn.Status.PROCESSING:
        return False
    lockouts.lockout_guard(checkin=checkin)
    if lockouts.lockout_blocking(checkin=checkin, at=now):
        from verification.services.checkins import checkin_decide  # checkins imports this module

        return checkin_decide(
            checkin_id=checkin_id, decision=0, reason=Reason.LOCKED_OUT, person=person, threshold=threshold,
            review_threshold=review_threshold, model_version=model_version, threshold_source=threshold_source,
            timings=timings, probe_embedding=probe_embedding,
            audit_detail={"superseded": {"verdict": MODEL_VERDICT_REVIEW, "score": score,
                                         "best_reference_id": best_reference_id}},
        )
    expires = now + timedelta(seconds=settings.REVIEW_TIMEOUT_SECONDS)
    timings = dict(timings or {})
    timings["total_ms"] = round((now - checkin.created_at).total_seconds() * 1000.0, 3)
    opened = CheckIn.objects.filter(pk=checkin_id, status=CheckIn.Status.PROCESSING).update(
        status=CheckIn.Status.REVIEW,
        person=person,
        score=score,
        threshold=threshold,
        review_threshold=review_threshold,
        model_version=model_version,
        best_reference_id=best_reference_id,
        timings=timings,
        probe_embedding=probe_embedding,
        review_started_at=now,
        review_expires_at=expires,
        updated_at=now,
        last_error="",
    )
    if not opened:
        return False
    # After commit: a door waiting on its POST learns "review" (please wait) at once (services/waits.py).
    waits.checkin_announce_final(checkin_id=checkin_id)
    _audit(
        checkin,
        actor=device_actor(checkin.device.name),
        kind=AuditEntry.Kind.REVIEW,
        person_name=person.name,
        score=score,
        threshold=threshold,
        model_version=model_version,
        processing_ms=timings["total_ms"],
        detail={
            "verdict": MODEL_VERDICT_REVIEW,
            "review_threshold": review_threshold,
            "review_expires_at": expires.isoformat(),
            "best_reference_id": best_reference_id,
            "timings": timings,
        }
        | ({"threshold_source": threshold_source} if threshold_source else {})
        | ({"reference_scores": reference_scores} if reference_scores else {})
        | ({"decision_rule": decision_rule} if decision_rule else {}),
    )
    logger.info("check-in %s sent to review (score %.4f in [%.4f, %.4f)) until %s", checkin_id, score,
                review_threshold, threshold, expires.isoformat())
    return True


def _review_entry(checkin_id: int) -> AuditEntry | None:
    return AuditEntry.objects.filter(checkin_id=checkin_id, kind=AuditEntry.Kind.REVIEW).order_by("seq").first()


def _close(checkin: CheckIn, *, now, decision: int, reason: str, guard: str,  # noqa: ANN001 - datetime
           guard_decision: int | None = None, extra: dict[str, Any] | None = None) -> bool:
    """End the review of the locked ``checkin``: the conditional UPDATE and the decision entry.
    ``guard_decision``: what the guard chose, when a rule overrode it (``extra`` says which)."""
    timings = dict(checkin.timings or {})
    timings["review_ms"] = round((now - checkin.review_started_at).total_seconds() * 1000.0, 3)
    timings["total_ms"] = round((now - checkin.created_at).total_seconds() * 1000.0, 3)
    closed = CheckIn.objects.filter(pk=checkin.pk, status=CheckIn.Status.REVIEW).update(
        status=CheckIn.Status.DECIDED,
        decision=decision,
        reason=reason,
        reviewed_by=guard,
        timings=timings,
        decided_at=now,
        updated_at=now,
    )
    if not closed:
        return False
    waits.checkin_announce_final(checkin_id=checkin.pk)
    opened = _review_entry(checkin.pk)
    _audit(
        checkin,
        actor=guard or SYSTEM_ACTOR,
        kind=AuditEntry.Kind.DECISION,
        person_name=checkin.person.name if checkin.person_id else "",
        decision=decision,
        score=checkin.score,
        threshold=checkin.threshold,
        reason=reason,
        model_version=checkin.model_version,
        processing_ms=timings["total_ms"],
        detail={
            "model_verdict": MODEL_VERDICT_REVIEW,
            "review_threshold": checkin.review_threshold,
            "guard": guard or None,
            "guard_decision": (GUARD_DECISIONS[decision if guard_decision is None else guard_decision]
                               if guard else None),
            "review_seconds": round(timings["review_ms"] / 1000.0, 3),
            "review_entry_seq": opened.seq if opened else None,
            "best_reference_id": checkin.best_reference_id,
            "timings": timings,
        }
        | ({"threshold_source": opened.detail["threshold_source"]}
           if opened and opened.detail.get("threshold_source") else {})
        | (extra or {}),
    )
    return True


def _admission_refusal(checkin: CheckIn, *, at) -> tuple[str, dict[str, Any]] | None:  # noqa: ANN001 - datetime
    """Why a guard's admit cannot stand now, or None: the person was erased or deleted, deactivated or
    past their validity dates, or lost the right to this door (``services/access.py``) while the review
    waited. The guard judges the face; these rules are not the guard's to waive."""
    from verification import selectors
    from verification.services.access import access_check

    person = checkin.person
    if person is None:
        return Reason.UNKNOWN_PERSON, {}
    if not selectors.person_is_admitted(person=person, at=at):
        return Reason.INACTIVE_PERSON, {}
    rights = access_check(person=person, device=checkin.device, at=at)
    if not rights.allowed:
        return rights.reason, rights.audit_detail()
    return None


@transaction.atomic
def checkin_review_decide(*, checkin_id: int, decision: int, guard: str) -> bool:
    """A guard admits (1) or refuses (0) a check-in in review. True if this call decided it; False if
    it was not in review (already decided by another guard, timed out, never in review) or its
    deadline has passed, in which case it becomes ``review_timeout`` now, as the door would be told.
    ``guard`` is the user name; the admin checks the ``review_checkin`` permission before calling."""
    if decision not in GUARD_DECISIONS:
        raise ValueError(f"decision must be 0 or 1, not {decision!r}")
    if not guard:
        raise ValueError("a guard's decision needs the guard's user name for the audit log")
    now = timezone.now()
    # Only the check-in's row is locked (``of``): PostgreSQL cannot lock the nullable side of the person join.
    checkin = (
        CheckIn.objects.select_for_update(of=("self",)).select_related("device", "person")
        .filter(pk=checkin_id).first()
    )
    if checkin is None or checkin.status != CheckIn.Status.REVIEW:
        return False
    if checkin.review_expires_at <= now:
        _close(checkin, now=now, decision=0, reason=Reason.REVIEW_TIMEOUT, guard="")
        return False
    # Person first, then device, as every deciding transaction (services/lockouts.py).
    lockouts.lockout_guard(checkin=checkin)
    chosen, reason, extra = decision, ("" if decision else Reason.GUARD_REFUSED), {}
    refusal = _admission_refusal(checkin, at=now) if decision == 1 else None
    if refusal is not None:
        decision, (reason, extra) = 0, refusal
        extra = {**extra, "superseded": {"guard_decision": GUARD_DECISIONS[chosen], "refused_because": reason}}
    if not _close(checkin, now=now, decision=decision, reason=reason, guard=guard, guard_decision=chosen, extra=extra):
        return False
    if decision == 0:
        lockouts.lockout_note_refusal(checkin=checkin, reason=reason, at=now)
    logger.info("check-in %s %s by guard %s%s", checkin_id, GUARD_DECISIONS[chosen], guard,
                f" (refused {reason}: {GUARD_DECISIONS[chosen]} superseded)" if refusal else "")
    return True


@transaction.atomic
def checkin_review_expire(*, checkin_id: int) -> bool:
    """A review past its deadline becomes 0 ``review_timeout``. False if it was not in review or not
    yet due (idempotent: the sweep and a door's poll may both try)."""
    now = timezone.now()
    checkin = (
        CheckIn.objects.select_for_update(of=("self",)).select_related("device", "person")
        .filter(pk=checkin_id, status=CheckIn.Status.REVIEW, review_expires_at__lte=now).first()
    )
    if checkin is None:
        return False
    if not _close(checkin, now=now, decision=0, reason=Reason.REVIEW_TIMEOUT, guard=""):
        return False
    logger.warning("check-in %s: no guard answered its review within %s s; refused review_timeout", checkin_id,
                   round((checkin.review_expires_at - checkin.review_started_at).total_seconds()))
    return True


def checkin_reviews_expire() -> list[int]:
    """Beat: every review past its deadline becomes ``review_timeout``; the ids this call expired."""
    due = CheckIn.objects.filter(status=CheckIn.Status.REVIEW, review_expires_at__lte=timezone.now())
    return [pk for pk in due.order_by("review_started_at").values_list("pk", flat=True)
            if checkin_review_expire(checkin_id=pk)]


def checkin_review_lapse_if_due(*, checkin: CheckIn) -> CheckIn:
    """For the door's poll: ``checkin`` as it is now, its review expired first when overdue (so a site
    without beat still answers a waiting door by the deadline). Any other row is returned untouched."""
    if checkin.status != CheckIn.Status.REVIEW or checkin.review_expires_at > timezone.now():
        return checkin
    checkin_review_expire(checkin_id=checkin.pk)
    checkin.refresh_from_db()
    return checkin
