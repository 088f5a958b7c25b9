"""Attempt limiting (NIST SP 800-53 AC-7): too many refusals lock out a claimed person or a device.

After ``LOCKOUT_PERSON_MAX_FAILURES`` refusals for the same claimed external ID (or
``LOCKOUT_DEVICE_MAX_FAILURES`` at the same device) within ``LOCKOUT_WINDOW_SECONDS``, further
check-ins are decided 0 with reason ``locked_out`` for ``LOCKOUT_SECONDS`` or until an operator
unlocks. Every refusal counts except ``locked_out`` itself. Failures from before the end of the
previous lockout never count again, so an unlock really gives a fresh start.

``lockout_note_failure`` runs inside ``checkin_decide``'s transaction after its audit append, which
holds the audit chain head's row lock: decisions are counted one at a time, so two workers deciding
the fifth and sixth failure together cannot both miss (or both create) the lockout.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from verification.audit import audit_append
from verification.models import AuditEntry, CheckIn, Lockout

Scope = Lockout.Scope


def _latest(scope: str, key: str) -> Lockout | None:
    return Lockout.objects.filter(scope=scope, key=key).order_by("-created_at", "-pk").first()


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


def _failures(scope: str, key: str, now: datetime) -> int:
    since = now - timedelta(seconds=settings.LOCKOUT_WINDOW_SECONDS)
    latest = _latest(scope, key)
    if latest is not None:
        since = max(since, latest.ends_at())
    refusals = CheckIn.objects.filter(status=CheckIn.Status.DECIDED, decision=0, created_at__gte=since).exclude(
        reason=CheckIn.Reason.LOCKED_OUT
    )
    if scope == Scope.PERSON:
        refusals = refusals.filter(claimed_external_id=key)
    else:
        refusals = refusals.filter(device_id=int(key))
    return refusals.count()


def lockout_note_failure(*, checkin: CheckIn) -> list[Lockout]:
    """After a refusal of ``checkin`` was written: lock out its person and/or device if over the limit.

    Call inside the deciding transaction, after the decision's audit append (see module docstring).
    """
    now = timezone.now()
    limits = (
        (Scope.PERSON, checkin.claimed_external_id, checkin.claimed_external_id, settings.LOCKOUT_PERSON_MAX_FAILURES),
        (Scope.DEVICE, str(checkin.device_id), checkin.device.name, settings.LOCKOUT_DEVICE_MAX_FAILURES),
    )
    created: list[Lockout] = []
    for scope, key, label, limit in limits:
        if lockout_active(scope=scope, key=key, at=now) is not None:
            continue
        failures = _failures(scope, key, now)
        if failures < limit:
            continue
        lockout = Lockout(
            scope=scope,
            key=key,
            label=label,
            failures=failures,
            locked_until=now + timedelta(seconds=settings.LOCKOUT_SECONDS),
        )
        lockout.full_clean()
        lockout.save()
        audit_append(
            kind=AuditEntry.Kind.LOCKOUT,
            checkin_id=checkin.pk,
            device_ref=checkin.device_id,
            device_name=checkin.device.name,
            person_external_id=checkin.claimed_external_id if scope == Scope.PERSON else "",
            reason=CheckIn.Reason.LOCKED_OUT,
            detail={
                "scope": scope,
                "lockout_id": lockout.pk,
                "failures": failures,
                "window_seconds": settings.LOCKOUT_WINDOW_SECONDS,
                "locked_until": lockout.locked_until.isoformat(),
            },
        )
        created.append(lockout)
    return created


@transaction.atomic
def lockout_release(*, lockout: Lockout, operator: str) -> bool:
    """An operator ends a lockout early (admin action). False if it had already ended."""
    now = timezone.now()
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
        device_ref=int(locked.key) if is_device else None,
        device_name=locked.label if is_device else "",
        person_external_id="" if is_device else locked.key,
        detail={"scope": locked.scope, "lockout_id": locked.pk, "operator": operator},
    )
    lockout.unlocked_at, lockout.unlocked_by = locked.unlocked_at, locked.unlocked_by
    return True
