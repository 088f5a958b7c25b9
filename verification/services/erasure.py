"""Erasure of a person (GDPR art. 17): biometric data gone, the audit log kept but pseudonymised.

Deleted: every reference photo, aligned face crop and embedding of the person, and the snapshot files
of every check-in that claimed their external ID. Kept: check-in and audit rows (the record of who
was let in), with the name and external ID replaced by a random pseudonym, so rows of the same
erased person can still be told apart from others without saying who it was. The audit chain still
verifies (names enter it only through a salted digest, see ``AuditEntry``), and an ``erasure`` entry
is appended as the receipt.

Files are deleted inside the transaction, before it commits: a failure afterwards leaves rows pointing
at missing files (the erasure is re-run), never files that no row points at.
"""
from __future__ import annotations

import secrets

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from verification.audit import audit_append, audit_pseudonymise
from verification.models import AuditEntry, CheckIn, Lockout, LockoutSubject, Person
from verification.services.enrolment import reference_remove
from verification.services.probe_faces import probe_face_delete

PSEUDONYM_PREFIX = "erased-"


@transaction.atomic
def person_erase(*, person: Person, operator: str) -> AuditEntry:
    """Erase ``person`` (see module docstring); return the erasure receipt appended to the audit log."""
    now = timezone.now()
    external_id = person.external_id
    person_id = person.pk
    pseudonym = f"{PSEUDONYM_PREFIX}{secrets.token_hex(8)}"

    references = list(person.references.all())
    files_deleted = sum(1 for reference in references for file in (reference.image, reference.face_crop) if file)
    for reference in references:
        reference_remove(reference=reference)  # the receipt below counts them

    checkins = CheckIn.objects.filter(Q(person_id=person_id) | Q(claimed_external_id=external_id))
    checkin_ids = list(checkins.values_list("pk", flat=True))
    for checkin in CheckIn.objects.filter(pk__in=checkin_ids).exclude(snapshot="", probe_face=""):
        if checkin.snapshot:
            checkin.snapshot.storage.delete(checkin.snapshot.name)
            files_deleted += 1
        files_deleted += probe_face_delete(checkin=checkin)  # the snapshot's aligned face
    CheckIn.objects.filter(pk__in=checkin_ids).update(
        claimed_external_id=pseudonym, person=None, snapshot="", probe_face="", snapshot_purged_at=now, updated_at=now,
        probe_embedding=None,  # derived from the snapshot (issue 9, item 7)
    )
    # The lock row of the claimed ID (issue 9, item 5) holds nothing else: it goes.
    LockoutSubject.objects.filter(scope=Lockout.Scope.PERSON, key=external_id).delete()
    Lockout.objects.filter(scope=Lockout.Scope.PERSON, key=external_id).update(
        key=pseudonym, label=pseudonym, updated_at=now
    )
    pseudonymised = audit_pseudonymise(external_id=external_id, pseudonym=pseudonym, at=now)
    person.delete()
    return audit_append(
        kind=AuditEntry.Kind.ERASURE,
        actor=operator,
        person_external_id=pseudonym,
        detail={
            "person_id": person_id,
            "operator": operator,
            "references_deleted": len(references),
            "files_deleted": files_deleted,
            "checkins_pseudonymised": len(checkin_ids),
            "audit_entries_pseudonymised": pseudonymised,
        },
    )
