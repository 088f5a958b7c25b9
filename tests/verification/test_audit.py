"""The audit log is append-only, survives deletes of people/devices, and detects tampering."""
from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.db import connection

from tests.conftest import upload
from verification import services
from verification.audit import audit_append, audit_verify
from verification.models import AuditEntry, AuditLogImmutable, CheckIn

pytestmark = pytest.mark.django_db


# The fixtures' device, person and reference photo are audited first (entries 1-3), then three decisions.
ENTRIES = 6
MIDDLE, LAST = 5, 6


@pytest.fixture
def decided(device, enrolled_person, fake_model) -> CheckIn:
    for _ in range(3):
        checkin = services.checkin_submit(device=device, person_external_id="B-1001", snapshot_file=upload())
        services.checkin_process(checkin_id=checkin.pk)
    return checkin


def test_orm_update_and_delete_of_audit_rows_are_refused(decided):
    entry = AuditEntry.objects.first()
    with pytest.raises(AuditLogImmutable):
        AuditEntry.objects.update(decision=1)
    with pytest.raises(AuditLogImmutable):
        AuditEntry.objects.filter(pk=entry.pk).delete()
    with pytest.raises(AuditLogImmutable):
        entry.delete()
    entry.reason = "edited"
    with pytest.raises(AuditLogImmutable):
        entry.save()
    assert AuditEntry.objects.count() == ENTRIES
    assert audit_verify() == (ENTRIES, None)


def test_deleting_person_and_checkins_keeps_the_audit_snapshot(decided, enrolled_person):
    enrolled_person.delete()
    CheckIn.objects.all().delete()
    entry = AuditEntry.objects.filter(kind="decision").order_by("seq").first()
    assert (entry.person_external_id, entry.person_name, entry.device_name) == ("B-1001", "Ada Lovelace", "front-door")
    assert audit_verify() == (ENTRIES, None)


def test_chain_links_each_entry_to_the_previous_hash(decided):
    entries = list(AuditEntry.objects.order_by("seq"))
    assert [entry.seq for entry in entries] == list(range(1, ENTRIES + 1))
    assert entries[0].prev_hash == "0" * 64
    assert all(later.prev_hash == earlier.entry_hash for earlier, later in zip(entries, entries[1:]))


@pytest.mark.parametrize(
    ("sql", "problem"),
    [
        (f"UPDATE verification_auditentry SET decision = 0, reason = 'no_match' WHERE seq = {MIDDLE}", "content"),
        (f"UPDATE verification_auditentry SET person_name = 'Mallory' WHERE seq = {MIDDLE}", "person name"),
        (f"DELETE FROM verification_auditentry WHERE seq = {MIDDLE}", "missing"),
        (f"DELETE FROM verification_auditentry WHERE seq = {LAST}", "head"),
    ],
    ids=["edited-decision", "edited-name", "deleted-middle", "deleted-last"],
)
def test_tampering_behind_djangos_back_is_detected(decided, sql, problem):
    with connection.cursor() as cursor:
        cursor.execute(sql)
    checked, broken = audit_verify()
    assert broken is not None
    assert problem in broken.problem
    assert broken.seq in (MIDDLE, LAST)


def test_verify_audit_log_command_reports_ok_and_the_first_broken_link(decided):
    out = io.StringIO()
    call_command("verify_audit_log", stdout=out)
    assert f"OK: {ENTRIES} audit entries" in out.getvalue()
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE verification_auditentry SET score = 0.01 WHERE seq = {MIDDLE}")
    err = io.StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command("verify_audit_log", stdout=io.StringIO(), stderr=err)
    assert exited.value.code == 1
    assert f"BROKEN at entry {MIDDLE}" in err.getvalue()


def test_appends_continue_the_chain_after_verification(decided):
    audit_append(kind="unlock", person_external_id="B-1001", person_name="Ada Lovelace")
    assert audit_verify() == (ENTRIES + 1, None)
