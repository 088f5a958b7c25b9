"""The tamper-evident audit chain: append an entry, verify the chain (in the database or an exported CSV).

Each entry's hash covers the previous entry's hash and a canonical JSON of its own content, the acting
user (``actor``) included. Appends lock the single ``AuditChainHead`` row, so concurrent workers extend
one chain, never fork it; the head's seq and hash change in the same transaction, so entries cut off
the tail are noticed. The person's name and external ID are covered through a salted digest (see
``AuditEntry``), so an erasure can blank them and the chain still verifies.

Hash schemes (``AuditEntry.hash_scheme``; a chain never steps down to a weaker one):

- ``sha256-v1``: entries written before the actor was recorded (the original fields, plain SHA-256);
- ``sha256-v2``: the same plus ``actor`` and the scheme's name, plain SHA-256 (``AUDIT_HMAC_KEY`` unset);
- ``hmac-sha256-v2``: the same, HMAC-SHA256 keyed with ``AUDIT_HMAC_KEY``. Someone who can write to the
  database but does not hold the key can no longer recompute a valid chain after editing a row; the
  head row carries a MAC of (seq, last hash) too, so rewinding it after deleting the tail is noticed.
"""
from __future__ import annotations

import csv
import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone as dt_timezone
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from verification.models import AuditChainHead, AuditEntry

GENESIS_HASH = "0" * 64

SCHEME_LEGACY = "sha256-v1"
SCHEME_SHA256 = "sha256-v2"
SCHEME_HMAC = "hmac-sha256-v2"
# In order of strength: along the chain the scheme may only stay or step up.
SCHEMES = (SCHEME_LEGACY, SCHEME_SHA256, SCHEME_HMAC)

# The actor of entries no person or device caused (lockouts, a worker noting a model version).
SYSTEM_ACTOR = "system"

# Fields that enter the hash, in order. Changing a list invalidates every chain written with it:
# add a scheme instead.
HASHED_FIELDS = (
    "seq", "kind", "created_at", "checkin_id", "device_ref", "device_name", "person_digest",
    "decision", "score", "threshold", "reason", "model_version", "processing_ms", "detail",
)
HASHED_FIELDS_V2 = (*HASHED_FIELDS, "actor", "hash_scheme")


class AuditKeyMissing(Exception):
    """A keyed entry was to be hashed without ``AUDIT_HMAC_KEY``."""


class AuditHeadBusy(Exception):
    """``audit_head_lock(wait=False)``: another transaction holds the chain head; try again later."""


def device_actor(name: str) -> str:
    """The actor of a check-in's entries: the door device that asked."""
    return f"device:{name}"


def hmac_key() -> bytes | None:
    key = getattr(settings, "AUDIT_HMAC_KEY", "")
    return key.encode() if key else None


def person_digest(*, salt: str, external_id: str, name: str) -> str:
    return hashlib.sha256(f"{salt}\x00{external_id}\x00{name}".encode()).hexdigest()


def _canonical(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(dt_timezone.utc).isoformat(timespec="microseconds")
    if isinstance(value, float):
        # Round-trip stable on every database backend.
        return repr(round(value, 9))
    return value


def entry_hash(entry: AuditEntry, prev_hash: str, *, key: bytes | None = None) -> str:
    """The hash of ``entry`` after ``prev_hash`` under the entry's own scheme (``key`` for keyed ones)."""
    scheme = entry.hash_scheme or SCHEME_LEGACY
    if scheme not in SCHEMES:
        raise ValueError(f"unknown audit hash scheme {scheme!r}")
    fields = HASHED_FIELDS if scheme == SCHEME_LEGACY else HASHED_FIELDS_V2
    content = {name: _canonical(getattr(entry, name)) for name in fields}
    payload = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    message = f"{prev_hash}\n{payload}".encode()
    if scheme == SCHEME_HMAC:
        if key is None:
            raise AuditKeyMissing(f"entry {entry.seq} is keyed ({SCHEME_HMAC}): AUDIT_HMAC_KEY is needed to verify it")
        return hmac.new(key, message, hashlib.sha256).hexdigest()
    return hashlib.sha256(message).hexdigest()


def head_mac(*, seq: int, last_hash: str, key: bytes) -> str:
    return hmac.new(key, f"audit-chain-head\n{seq}\n{last_hash}".encode(), hashlib.sha256).hexdigest()


def audit_head_lock(*, wait: bool = True) -> AuditChainHead:
    """Lock the chain head (inside a transaction): appends, and checks made before one, serialise on it.

    ``wait=False`` (appends nothing waits for, e.g. a worker noting its model version at start-up):
    raise ``AuditHeadBusy`` at once instead of queueing behind whoever holds the head, so that such an
    append never ties up a worker process (or its task time limit) behind a long transaction.
    """
    if wait:  # one query on every decision; the row is missing only after a flush
        head = AuditChainHead.objects.select_for_update().filter(pk=1).first()
        if head is not None:
            return head
    # The head row comes from a data migration; recreate it after a flush (transactional tests).
    AuditChainHead.objects.get_or_create(pk=1, defaults={"seq": 0, "last_hash": GENESIS_HASH})
    if wait:
        return AuditChainHead.objects.select_for_update().get(pk=1)
    # skip_locked: the row comes back only if this transaction could lock it (or already holds it).
    head = AuditChainHead.objects.select_for_update(skip_locked=True).filter(pk=1).first()
    if head is None:
        raise AuditHeadBusy("the audit chain head is locked by another transaction")
    return head


# No savepoint inside the caller's transaction (two round trips on every decision): an append that fails
# fails the caller's transaction too, which no caller survives anyway.
@transaction.atomic(savepoint=False)
def audit_append(
    *,
    kind: str,
    actor: str = "",
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
    """Append one entry at the end of the chain (inside the caller's transaction, if any).

    ``actor``: who did it (a staff user name, ``device_actor(name)``, ``cli:<user>``). Callers that name
    the acting user only as ``detail["operator"]`` get that; entries nobody caused get ``system``.
    """
    head = audit_head_lock()
    key = hmac_key()
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
        actor=actor or str((detail or {}).get("operator") or "") or SYSTEM_ACTOR,
        hash_scheme=SCHEME_HMAC if key else SCHEME_SHA256,
        prev_hash=head.last_hash,
    )
    entry.entry_hash = entry_hash(entry, head.last_hash, key=key)
    # Fields only: uniqueness and the constraints are the database's (it enforces them on INSERT);
    # validating them here would cost a SELECT each on every decision.
    entry.full_clean(exclude=["checkin"], validate_unique=False, validate_constraints=False)
    entry.save()
    head.seq = entry.seq
    head.last_hash = entry.entry_hash
    head.mac = head_mac(seq=head.seq, last_hash=head.last_hash, key=key) if key else ""
    head.save(update_fields=["seq", "last_hash", "mac", "updated_at"])
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


# --- Verification --------------------------------------------------------------------------------


@dataclass(frozen=True)
class BrokenLink:
    seq: int
    problem: str


@dataclass
class _Walk:
    checked: int = 0
    broken: BrokenLink | None = None
    last_seq: int = 0
    last_hash: str = GENESIS_HASH
    last_scheme: str = SCHEME_LEGACY


def _walk(entries: Iterable[AuditEntry], *, key: bytes | None, allow_gaps: bool = False) -> _Walk:
    """Check each entry and its link to the previous one; stop at the first problem.

    ``allow_gaps`` (a filtered export): a row after a gap is checked against its own ``prev_hash``.
    """
    walk = _Walk()
    for entry in entries:
        expected = walk.last_seq + 1
        if entry.seq != expected and not (allow_gaps and entry.seq > expected):
            problem = f"entry {expected} is missing (next is {entry.seq})" if entry.seq > expected else "out of order"
            walk.broken = BrokenLink(expected, problem)
            return walk
        linked = entry.seq == expected
        if linked and entry.prev_hash != walk.last_hash:
            walk.broken = BrokenLink(entry.seq, "prev_hash does not match the previous entry's hash")
            return walk
        problem = _entry_problem(entry, key=key, after=walk.last_scheme if linked else SCHEME_LEGACY)
        if problem:
            walk.broken = BrokenLink(entry.seq, problem)
            return walk
        walk.checked += 1
        walk.last_seq, walk.last_hash, walk.last_scheme = entry.seq, entry.entry_hash, entry.hash_scheme
    return walk


def _entry_problem(entry: AuditEntry, *, key: bytes | None, after: str) -> str:
    scheme = entry.hash_scheme or SCHEME_LEGACY
    if scheme not in SCHEMES:
        return f"unknown hash scheme {scheme!r}"
    if SCHEMES.index(scheme) < SCHEMES.index(after):
        return f"hash scheme {scheme} after {after} (downgraded: rewritten without the key?)"
    try:
        if entry_hash(entry, entry.prev_hash, key=key) != entry.entry_hash:
            return "content does not match its hash (edited)"
    except AuditKeyMissing as missing:
        return str(missing)
    if entry.person_salt:
        if person_digest(salt=entry.person_salt, external_id=entry.person_external_id, name=entry.person_name) != entry.person_digest:
            return "person name or ID does not match its digest (edited)"
    elif not entry.person_digest and (entry.person_external_id or entry.person_name):
        return "person name or ID on an entry that had none (edited)"
    return ""


def audit_verify(*, batch_size: int = 1000) -> tuple[int, BrokenLink | None]:
    """Walk the chain in order, then the head; return (entries checked, first broken link or None)."""
    key = hmac_key()
    walk = _walk(AuditEntry.objects.order_by("seq").iterator(chunk_size=batch_size), key=key)
    if walk.broken is not None:
        return walk.checked, walk.broken
    head = AuditChainHead.objects.filter(pk=1).first()
    if head is None or head.seq != walk.checked or head.last_hash != walk.last_hash:
        return walk.checked, BrokenLink(walk.checked + 1, "the chain head does not match the last entry (entries removed)")
    if key is not None and (head.seq or head.mac):
        if not head.mac:
            return walk.checked, BrokenLink(head.seq, "the chain head carries no MAC (rewritten without the key, or no entry appended since AUDIT_HMAC_KEY was set)")
        if not hmac.compare_digest(head.mac, head_mac(seq=head.seq, last_hash=head.last_hash, key=key)):
            return walk.checked, BrokenLink(head.seq, "the chain head's MAC does not match (head rewritten, or another AUDIT_HMAC_KEY)")
    return walk.checked, None


# --- The CSV export: every hashed column, so a file verifies on its own -------------------------

CSV_COLUMNS = [
    "seq", "created_at", "kind", "actor", "device_name", "device_ref", "person_external_id", "person_name",
    "person_salt", "person_digest", "decision", "score", "threshold", "reason", "model_version", "processing_ms",
    "checkin_id", "detail", "hash_scheme", "prev_hash", "entry_hash",
]
_INT_COLUMNS = {"seq", "device_ref", "decision", "checkin_id"}
_FLOAT_COLUMNS = {"score", "threshold", "processing_ms"}
# A cell a spreadsheet would run as a formula gets a leading "'"; so does one that starts with "'",
# so that reading a file back removes exactly one.
_ESCAPED_STARTS = ("=", "+", "-", "@", "'")


def csv_row(entry: AuditEntry) -> list[Any]:
    return [_csv_cell(column, getattr(entry, column)) for column in CSV_COLUMNS]


def _csv_cell(column: str, value: Any) -> Any:
    if column == "detail":
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    if isinstance(value, datetime):
        return value.astimezone(dt_timezone.utc).isoformat(timespec="microseconds")
    if isinstance(value, str) and value.startswith(_ESCAPED_STARTS):
        # Spreadsheet formula injection: a name like "=HYPERLINK(...)" must stay text.
        return "'" + value
    return "" if value is None else value


def _csv_value(column: str, cell: str) -> Any:
    if column in _INT_COLUMNS:
        return int(cell) if cell != "" else None
    if column in _FLOAT_COLUMNS:
        return float(cell) if cell != "" else None
    if column == "created_at":
        return datetime.fromisoformat(cell)
    if column == "detail":
        return json.loads(cell)
    return cell[1:] if cell.startswith("'") else cell


def _entries_from_csv(reader: Iterator[dict[str, str]]) -> Iterator[AuditEntry]:
    for line, row in enumerate(reader, start=2):
        try:
            yield AuditEntry(**{column: _csv_value(column, row[column]) for column in CSV_COLUMNS})
        except (KeyError, TypeError, ValueError) as exc:
            raise CsvUnreadable(f"line {line}: {exc!r}") from exc


class CsvUnreadable(Exception):
    """The file is not an audit export (a column missing, a value that does not parse)."""


def audit_verify_csv(lines: Iterable[str], *, allow_gaps: bool = False) -> tuple[int, BrokenLink | None]:
    """Verify an exported file on its own: every row's hash, and the links between consecutive rows.

    A complete export starts at entry 1 and has no gaps; ``allow_gaps`` accepts a filtered one, each row
    after a gap checked against its own ``prev_hash``. With ``AUDIT_HMAC_KEY`` set, the file's last entry
    must be keyed (a file rewritten without the key would be plain throughout). A file cannot show that
    entries were cut off its end: compare its last ``entry_hash`` with the live chain (``verify_audit_log``).
    """
    key = hmac_key()
    reader = csv.DictReader(lines)
    missing = set(CSV_COLUMNS) - set(reader.fieldnames or ())
    if missing:
        raise CsvUnreadable(f"not an audit export: columns missing: {sorted(missing)}")
    walk = _walk(_entries_from_csv(reader), key=key, allow_gaps=allow_gaps)
    if walk.broken is None and key is not None and walk.checked and walk.last_scheme != SCHEME_HMAC:
        return walk.checked, BrokenLink(walk.last_seq, "AUDIT_HMAC_KEY is set but the file's last entry is not keyed")
    return walk.checked, walk.broken
