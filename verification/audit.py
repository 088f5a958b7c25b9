"""The tamper-evident audit chain: append an entry, verify the chain.

Each entry's hash is SHA-256 over the previous entry's hash and a canonical JSON of its own content.
Appends lock the single ``AuditChainHead`` row, so concurrent workers extend one chain, never fork it.
The person's name and external ID are covered through a salted digest (see ``AuditEntry``).
"""
from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone as dt_timezone
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from verification.models import AuditChainHead, AuditEntry

GENESIS_HASH = "0" * 64

# Fields that enter the hash, in order. Changing this list invalidates every existing chain.
HASHED_FIELDS = (
    "seq", "kind", "created_at", "checkin_id", "device_ref", "device_name", "person_digest",
    "decision", "score", "threshold", "reason", "model_version", "processing_ms", "detail",
)


def person_digest(*, salt: str, external_id: str, name: str) -> str:
    return hashlib.sha256(f"{salt}\x00{external_id}\x00{name}".encode()).hexdigest()


def _canonical(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(dt_timezone.utc).isoformat(timespec="microseconds")
    if isinstance(value, float):
        # Round-trip stable on every database backend.
        return repr(round(value, 9))
    return value


def entry_hash(entry: AuditEntry, prev_hash: str) -> str:
    content = {name: _canonical(getattr(entry, name)) for name in HASHED_FIELDS}
    payload = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{prev_hash}\n{payload}".encode()).hexdigest()


@transaction.atomic
def audit_append(
    *,
    kind: str,
    checkin_id: int | None = None,
    device_ref: int | None = None,
    device_name: str = "",
    person_external_id: str = "",
    person_name: str = "",
    decision: int | None = None,
    score: float | None = None,
    threshold: float | None = None,
    reason: str = "",
    model_version: str = "",
    processing_ms: float | None = None,
    detail: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append one entry at the end of the chain (inside the caller's transaction, if any)."""
    # The head row comes from a data migration; recreate it after a flush (transactional tests).
    AuditChainHead.objects.get_or_create(pk=1, defaults={"seq": 0, "last_hash": GENESIS_HASH})
    head = AuditChainHead.objects.select_for_update().get(pk=1)
    salt = secrets.token_hex(16) if (person_external_id or person_name) else ""
    entry = AuditEntry(
        seq=head.seq + 1,
        kind=kind,
        # Truncated to microseconds so the hashed value equals what every backend stores.
        created_at=timezone.now(),
        checkin_id=checkin_id,
        device_ref=device_ref,
        device_name=device_name,
        person_external_id=person_external_id,
        person_name=person_name,
        person_salt=salt,
        person_digest=person_digest(salt=salt, external_id=person_external_id, name=person_name) if salt else "",
        decision=decision,
        score=None if score is None else float(score),
        threshold=None if threshold is None else float(threshold),
        reason=reason,
        model_version=model_version,
        processing_ms=None if processing_ms is None else float(processing_ms),
        detail=detail or {},
        prev_hash=head.last_hash,
    )
    entry.entry_hash = entry_hash(entry, head.last_hash)
    entry.full_clean(exclude=["checkin"])
    entry.save()
    head.seq = entry.seq
    head.last_hash = entry.entry_hash
    head.save(update_fields=["seq", "last_hash", "updated_at"])
    return entry


def audit_pseudonymise(*, external_id: str, pseudonym: str, at: datetime) -> int:
    """Erasure: replace a person's name and external ID in their audit entries by ``pseudonym``.

    The one change the append-only log allows (the PostgreSQL trigger of migration 0004 permits exactly
    this and nothing else). The chain still verifies: name and ID enter the hash only through the
    salted ``person_digest``, which stays, while the salt that could confirm a guess is blanked.
    Returns the number of entries changed.
    """
    if not pseudonym or pseudonym == external_id:
        raise ValueError("a pseudonym different from the external ID is required")
    entries = AuditEntry.objects.filter(person_external_id=external_id, person_erased_at__isnull=True)
    # AuditQuerySet.update refuses every change; this one is deliberate, so the base class does it.
    return QuerySet.update(entries, person_external_id=pseudonym, person_name="", person_salt="", person_erased_at=at)


@dataclass(frozen=True)
class BrokenLink:
    seq: int
    problem: str


def audit_verify(*, batch_size: int = 1000) -> tuple[int, BrokenLink | None]:
    """Walk the chain in order; return (entries checked, first broken link or None)."""
    prev_hash = GENESIS_HASH
    expected_seq = 1
    checked = 0
    for entry in AuditEntry.objects.order_by("seq").iterator(chunk_size=batch_size):
        if entry.seq != expected_seq:
            return checked, BrokenLink(expected_seq, f"entry {expected_seq} is missing (next is {entry.seq})")
        if entry.prev_hash != prev_hash:
            return checked, BrokenLink(entry.seq, "prev_hash does not match the previous entry's hash")
        if entry_hash(entry, prev_hash) != entry.entry_hash:
            return checked, BrokenLink(entry.seq, "content does not match its hash (edited)")
        if entry.person_erased_at is None and entry.person_salt:
            digest = person_digest(salt=entry.person_salt, external_id=entry.person_external_id, name=entry.person_name)
            if digest != entry.person_digest:
                return checked, BrokenLink(entry.seq, "person name or ID does not match its digest (edited)")
        prev_hash = entry.entry_hash
        expected_seq += 1
        checked += 1
    head = AuditChainHead.objects.get(pk=1)
    if head.seq != checked or head.last_hash != prev_hash:
        return checked, BrokenLink(checked + 1, "the chain head does not match the last entry (entries removed)")
    return checked, None
