"""Door devices and their tokens: create, issue a token, revoke, reinstate, note that one was seen.

A revoked device stays revoked: issuing a token never clears the revocation (issue 9, item 4: the
"Issue new tokens" action used to bring a revoked device back, unaudited). Reinstating is its own
action, with a fresh token (the revoked one never works again) and an audit entry naming the operator.
Only the SHA-256 of a token is stored; the raw token is returned once, to be shown once.
"""
from __future__ import annotations

import secrets

from django.db import transaction
from django.utils import timezone

from verification import selectors
from verification.audit import audit_append
from verification.errors import DeviceRevoked, DomainError
from verification.models import AuditEntry, Device


@transaction.atomic
def device_create(*, name: str, operator: str = "") -> tuple[Device, str]:
    """Create a device and return it with its raw token. Only the hash is stored: show it once."""
    device = Device(name=name)
    return device, device_issue_token(device=device, operator=operator)


@transaction.atomic
def device_issue_signing_secret(*, device: Device, operator: str = "") -> str:
    """Give the device a new request-signing secret (replacing any old one) and return it, to be shown
    once. From now on every API request of the device must be signed (issue 9, item 7). Audited (never
    the secret). Refused for a revoked device."""
    locked = Device.objects.select_for_update().get(pk=device.pk)
    if locked.revoked_at is not None:
        raise DeviceRevoked(
            f"{locked.name} is revoked: no signing secret. Reinstate it first.",
            detail={"device": locked.name, "revoked_at": locked.revoked_at.isoformat()},
        )
    secret = secrets.token_hex(32)
    locked.signing_secret = secret
    locked.save(update_fields=["signing_secret", "updated_at"])
    audit_append(
        kind=AuditEntry.Kind.DEVICE_SIGNING_SECRET_ISSUED,
        actor=operator,
        device_ref=locked.pk,
        device_name=locked.name,
        detail={"operator": operator} if operator else None,
    )
    device.signing_secret, device.updated_at = locked.signing_secret, locked.updated_at
    return secret


@transaction.atomic
def device_remove_signing_secret(*, device: Device, operator: str = "") -> Device:
    """Stop requiring signed requests from the device (its token alone authenticates again). Audited."""
    locked = Device.objects.select_for_update().get(pk=device.pk)
    if locked.signing_secret:
        locked.signing_secret = ""
        locked.save(update_fields=["signing_secret", "updated_at"])
        audit_append(
            kind=AuditEntry.Kind.DEVICE_SIGNING_SECRET_REMOVED,
            actor=operator,
            device_ref=locked.pk,
            device_name=locked.name,
            detail={"operator": operator} if operator else None,
        )
    device.signing_secret, device.updated_at = locked.signing_secret, locked.updated_at
    return device


@transaction.atomic
def device_issue_token(*, device: Device, operator: str = "") -> str:
    """Give a new or active device a fresh token, replacing any old one; return the raw token. Audited:
    ``device_created`` for a new device, ``device_token_issued`` otherwise (the token's prefix, never it).

    Refused (``DeviceRevoked``) for a revoked device, judged by the database row, not by ``device``
    (an instance loaded before the revocation must not save the revocation away).
    """
    if device.pk is not None:
        revoked_at = Device.objects.select_for_update().filter(pk=device.pk).values_list("revoked_at", flat=True).first()
        if revoked_at is not None:
            device.revoked_at = revoked_at
            raise DeviceRevoked(
                f"{device.name} is revoked: no new token. Reinstate it first (its own, audited action).",
                detail={"device": device.name, "revoked_at": revoked_at.isoformat()},
            )
    raw_token = _token_set(device)
    device.full_clean()
    created = device.pk is None
    if created:
        device.save()
    else:
        device.save(update_fields=["token_hash", "token_prefix", "token_issued_at", "updated_at"])
    audit_append(
        kind=AuditEntry.Kind.DEVICE_CREATED if created else AuditEntry.Kind.DEVICE_TOKEN_ISSUED,
        actor=operator,
        device_ref=device.pk,
        device_name=device.name,
        detail={"token_prefix": device.token_prefix},
    )
    return raw_token


@transaction.atomic
def device_revoke(*, device: Device, operator: str = "") -> Device:
    """Revoke the device's token. Its check-ins still queued are refused (``device_revoked``) by the worker."""
    locked = Device.objects.select_for_update().get(pk=device.pk)
    if locked.revoked_at is None:
        locked.revoked_at = timezone.now()
        locked.save(update_fields=["revoked_at", "updated_at"])
        audit_append(
            kind=AuditEntry.Kind.DEVICE_REVOKED,
            actor=operator,
            device_ref=locked.pk,
            device_name=locked.name,
            detail={"operator": operator} if operator else None,
        )
    device.revoked_at, device.updated_at = locked.revoked_at, locked.updated_at
    return device


@transaction.atomic
def device_reinstate(*, device: Device, operator: str) -> str:
    """Bring a revoked device back with a NEW token (the revoked one stays dead); audited. Returns the raw token."""
    if not operator:
        raise ValueError("reinstating a device needs the operator's name for the audit log")
    locked = Device.objects.select_for_update().get(pk=device.pk)
    if locked.revoked_at is None:
        raise DomainError(f"{locked.name} is not revoked.", code="device_not_revoked", detail={"device": locked.name})
    revoked_at = locked.revoked_at
    locked.revoked_at = None
    raw_token = _token_set(locked)
    locked.full_clean()
    locked.save(update_fields=["revoked_at", "token_hash", "token_prefix", "token_issued_at", "updated_at"])
    audit_append(
        kind=AuditEntry.Kind.DEVICE_REINSTATED,
        actor=operator,
        device_ref=locked.pk,
        device_name=locked.name,
        detail={"operator": operator, "revoked_at": revoked_at.isoformat(), "token_prefix": locked.token_prefix},
    )
    for field in ("revoked_at", "token_hash", "token_prefix", "token_issued_at", "updated_at"):
        setattr(device, field, getattr(locked, field))
    return raw_token


def _token_set(device: Device) -> str:
    raw_token = secrets.token_urlsafe(32)
    device.token_hash = selectors.token_hash(raw_token)
    device.token_prefix = raw_token[:8]
    device.token_issued_at = timezone.now()
    return raw_token


DEVICE_SEEN_RESOLUTION_SECONDS = 60


def device_seen(*, device: Device) -> None:
    """Record that the device authenticated; at most one write a minute per device."""
    now = timezone.now()
    if device.last_seen_at is None or (now - device.last_seen_at).total_seconds() >= DEVICE_SEEN_RESOLUTION_SECONDS:
        Device.objects.filter(pk=device.pk).update(last_seen_at=now)
        device.last_seen_at = now
