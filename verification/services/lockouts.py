"""Attempt limiting (NIST SP 800-53 AC-7): too many refusals lock out a claimed person or a device.

What counts: toward a claimed PERSON only ``no_match`` (a face was compared and did not match: a
frame without a usable face says nothing about who is at the door, and must not let a colleague
lock someone out); toward a DEVICE every refusal except ``locked_out``, ``device_revoked`` and
``outside_schedule``.
The review band (``services/reviews.py``): a guard's refusal (``guard_refused``) counts like ``no_match``
toward the person and the device (a person looked at the face and said no); a ``review_timeout`` counts
toward neither (nobody judged the face, and an unstaffed review queue must not lock anyone out).
``LOCKOUT_PERSON_MAX_FAILURES`` / ``LOCKOUT_DEVICE_MAX_FAILURES`` such refusals within
``LOCKOUT_WINDOW_SECONDS`` lock it out; further check-ins are decided 0 ``locked_out``.

One lock, one clock (issue 9, item 5). ``checkin_decide`` calls ``lockout_guard`` first, which locks
(SELECT ... FOR UPDATE) a ``LockoutSubject`` row for the check-in's claimed person and one for its
device, always in that order. Under that lock it asks ``lockout_blocking`` whether a lockout is in
force at the decision's time and, if so, decides ``locked_out`` whatever the face said; then it writes
the decision and ``lockout_note_refusal`` counts refusals by ``decided_at``, the same clock. With W
workers deciding attempts of the same person in parallel, they decide one after another and every
attempt decided after the limit is ``locked_out``: no extra tries. (The worker's early check before
any face work is only a shortcut; the decision's check is the one that counts.)

Escalation. A lockout that begins within ``LOCKOUT_ESCALATION_SECONDS`` of the end of the previous one
of the same person/device (which ended by itself) is one level higher and lasts twice as long:
``LOCKOUT_SECONDS * 2^(level-1)``, at most ``LOCKOUT_MAX_SECONDS``. A person's count starts afresh
after each lockout; a device's does not: during that period its previous lockout's refusals still
count, so its next refusal locks it again, for twice as long. An operator's unlock is a fresh start
for both (no carried count, level 1 again).

Every lockout is audited, logged at WARNING and listed on the admin's front page while in force.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from verification.audit import audit_append
from verification.models import AuditEntry, CheckIn, Lockout, LockoutSubject

logger = logging.getLogger(__name__)

Scope = Lockout.Scope
Reason = CheckIn.Reason

# Refusals that count toward no lockout: the lockout's own, a revoked device's (not a face try), and
# one outside the person's access windows (people queueing before their shift are no attack; issue 11).
NOT_COUNTED = (Reason.LOCKED_OUT, Reason.DEVICE_REVOKED, Reason.OUTSIDE_SCHEDULE)
# A review nobody answered: not a judgement of the face either (services/reviews.py).
NOT_COUNTED = (*NOT_COUNTED, Reason.REVIEW_TIMEOUT)
# Refusals that count toward the claimed person's lockout: the face was judged not theirs.
PERSON_COUNTED = (Reason.NO_MATCH, Reason.GUARD_REFUSED)


def _latest(scope: str, key: str) -> Lockout | None:
    return Lockout.objects.filter(scope=scope, key=key).order_by("-created_at", "-pk").first()


def _subjects(checkin: CheckIn) -> tuple[tuple[str, str], tuple[str, str]]:
    # Always person first, then device: every deciding transaction locks in the same order.
    return (Scope.PERSON, checkin.claimed_external_id), (Scope.DEVICE, str(checkin.device_id))


def lockout_guard(*, checkin: CheckIn) -> None:
    """Lock the claimed person's and the device's rows until the calling transaction ends."""
    for scope, key in _subjects(checkin):
        LockoutSubject.objects.select_for_update().get_or_create(scope=scope, key=key)


def lockout_active(*, scope: str, key: str, at: datetime | None = None) -> Lockout | None:
    """The lockout of (scope, key) in force at ``at`` (default now), or None."""
    at = at or timezone.now()
    latest = _latest(scope, key)
    if latest is None or latest.unlocked_at is not None or latest.locked_until <= at:
        return None
    return latest


def lockout_blocking(*, checkin: CheckIn, at: datetime | None = None) -> Lockout | None:
    """The lockout that refuses this check-in: its claimed person's first, then its device's."""
    return lockout_active(scope=Scope.PERSON, key=checkin.claimed_external_id, at=at) or lockout_active(
        scope=Scope.DEVICE, key=str(checkin.device_id), at=at
    )


def lockout_retry_after(*, lockout: Lockout, at: datetime | None = None) -> int:
    """Whole seconds until ``lockout`` ends by itself (at least 1)."""
    remaining = (lockout.locked_until - (at or timezone.now())).total_seconds()
    return max(1, int(remaining) + (remaining % 1 > 0))


def _counts_toward(scope: str, reason: str) -> bool:
    if reason in NOT_COUNTED:
        return False
    return reason in PERSON_COUNTED if scope == Scope.PERSON else True


def _refusals(scope: str, key: str, since: datetime, now: datetime) -> int:
    refusals = CheckIn.objects.filter(
        status=CheckIn.Status.DECIDED, decision=0, decided_at__gte=since, decided_at__lte=now
    )
    if scope == Scope.PERSON:
        refusals = refusals.filter(claimed_external_id=key, reason__in=PERSON_COUNTED)
    else:
        refusals = refusals.filter(device_id=int(key)).exclude(reason__in=NOT_COUNTED)
    return refusals.count()


def _standing(scope: str, key: str, now: datetime) -> tuple[int, int, datetime]:
    """(previous level, carried refusals, count refusals since) of (scope, key) at ``now``."""
    since = now - timedelta(seconds=settings.LOCKOUT_WINDOW_SECONDS)
    previous = _latest(scope, key)
    if previous is None:
        return 0, 0, since
    since = max(since, previous.ends_at())
    on_probation = previous.unlocked_at is None and now - previous.locked_until < timedelta(
        seconds=settings.LOCKOUT_ESCALATION_SECONDS
    )
    if not on_probation:
        return 0, 0, since
    if scope == Scope.DEVICE:
        # The device's count carries over its lockout: counted since the lockout's end, window or not.
        return previous.level, previous.failures, previous.locked_until
    return previous.level, 0, since


def _duration(level: int) -> timedelta:
    seconds = settings.LOCKOUT_SECONDS * 2 ** min(level - 1, 32)
    return timedelta(seconds=min(seconds, settings.LOCKOUT_MAX_SECONDS))


def lockout_note_refusal(*, checkin: CheckIn, reason: str, at: datetime) -> list[Lockout]:
    """After a refusal of ``checkin`` (decided at ``at``) was written: lock out its person/device if due.

    Call inside the deciding transaction, after ``lockout_guard`` (see the module docstring).
    """
    labels = {Scope.PERSON: checkin.claimed_external_id, Scope.DEVICE: checkin.device.name}
    limits = {Scope.PERSON: settings.LOCKOUT_PERSON_MAX_FAILURES, Scope.DEVICE: settings.LOCKOUT_DEVICE_MAX_FAILURES}
    created: list[Lockout] = []
    for scope, key in _subjects(checkin):
        if not _counts_toward(scope, reason) or lockout_active(scope=scope, key=key, at=at) is not None:
            continue
        previous_level, carried, since = _standing(scope, key, at)
        failures = carried + _refusals(scope, key, since, at)
        if failures < limits[scope]:
            continue
        level = previous_level + 1
        lockout = Lockout(
            scope=scope, key=key, label=labels[scope], failures=failures, level=level, locked_until=at + _duration(level)
        )
        lockout.full_clean()
        lockout.save()
        audit_append(
            kind=AuditEntry.Kind.LOCKOUT,
            checkin_id=checkin.pk,
            device_ref=checkin.device_id,
            device_name=checkin.device.name,
            person_external_id=checkin.claimed_external_id if scope == Scope.PERSON else "",
            reason=Reason.LOCKED_OUT,
            detail={
                "scope": scope,
                "lockout_id": lockout.pk,
                "failures": failures,
                "carried": carried,
                "level": level,
                "window_seconds": settings.LOCKOUT_WINDOW_SECONDS,
                "locked_until": lockout.locked_until.isoformat(),
            },
        )
        # The operators' alert: a WARNING for the log pipeline, and the admin's front-page banner.
        logger.warning(
            "%s %s locked out until %s (level %d, %d refusals; check-in %s at device %s)",
            scope, labels[scope], lockout.locked_until.isoformat(), level, failures, checkin.pk, checkin.device.name,
        )
        created.append(lockout)
    return created


@transaction.atomic
def lockout_release(*, lockout: Lockout, operator: str) -> bool:
    """An operator ends a lockout early (admin action). False if it had already ended."""
    now = timezone.now()
    # The subject's row first, as a deciding transaction takes it: an unlock and a decision serialise.
    LockoutSubject.objects.select_for_update().get_or_create(scope=lockout.scope, key=lockout.key)
    locked = Lockout.objects.select_for_update().get(pk=lockout.pk)
    if locked.unlocked_at is not None or locked.locked_until <= now:
        return False
    locked.unlocked_at = now
    locked.unlocked_by = operator
    locked.full_clean()
    locked.save(update_fields=["unlocked_at", "unlocked_by", "updated_at"])
    is_device = locked.scope == Scope.DEVICE
    audit_append(
        kind=AuditEntry.Kind.UNLOCK,
        actor=operator,
        device_ref=int(locked.key) if is_device else None,
        device_name=locked.label if is_device else "",
        person_external_id="" if is_device else locked.key,
        detail={"scope": locked.scope, "lockout_id": locked.pk, "operator": operator},
    )
    lockout.unlocked_at, lockout.unlocked_by = locked.unlocked_at, locked.unlocked_by
    return True
