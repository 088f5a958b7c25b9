"""The audit log on PostgreSQL: append-only in the database itself (trigger of migration 0004), and the
hash chain still catches an owner who drops the trigger to edit rows."""
from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction

from verification import services
from verification.audit import audit_append, audit_verify
from verification.models import AuditEntry

pytestmark = pytest.mark.integration


@pytest.fixture
def entries(transactional_db) -> list[AuditEntry]:
    return [
        audit_append(kind="lockout", person_external_id=f"EMP-{n}", person_name=f"Person {n}", reason="locked_out")
        for n in range(3)
    ]


def raw(sql: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE verification_auditentry SET reason = 'edited' WHERE seq = 2",
        "UPDATE verification_auditentry SET person_name = 'Mallory' WHERE seq = 2",
        "UPDATE verification_auditentry SET person_external_id = 'erased-x', person_name = '', person_salt = '', "
        "person_erased_at = now(), decision = 1 WHERE seq = 2",  # an erasure that smuggles in another change
        "DELETE FROM verification_auditentry WHERE seq = 3",
        "DELETE FROM verification_auditentry",
    ],
    ids=["update-reason", "update-name", "erasure-plus-edit", "delete-last", "delete-all"],
)
def test_postgresql_refuses_raw_update_and_delete_of_audit_rows(entries, sql):
    with pytest.raises(DatabaseError, match="append-only"):
        raw(sql)
    assert list(AuditEntry.objects.order_by("seq").values_list("entry_hash", flat=True)) == [e.entry_hash for e in entries]
    assert audit_verify() == (3, None)


def test_erasure_pseudonymisation_is_the_one_change_postgresql_allows(entries):
    person = services.person_create(name="Person 1", external_id="EMP-1")

    receipt = services.person_erase(person=person, operator="dpo")

    erased = AuditEntry.objects.get(seq=2)
    assert erased.person_external_id == receipt.person_external_id and erased.person_name == ""
    assert audit_verify() == (5, None)  # the three, person_created (issue 9, item 3) and the receipt
    # Once erased, the row is frozen again.
    with pytest.raises(DatabaseError, match="append-only"):
        raw("UPDATE verification_auditentry SET person_external_id = 'erased-other' WHERE seq = 2")


def test_owner_who_drops_the_trigger_to_edit_a_row_is_caught_by_verify_audit_log(entries):
    with transaction.atomic():  # DDL is transactional in PostgreSQL: the trigger is back afterwards
        raw("DROP TRIGGER verification_auditentry_append_only ON verification_auditentry")
        raw("UPDATE verification_auditentry SET reason = 'edited' WHERE seq = 2")
        err = io.StringIO()
        with pytest.raises(SystemExit) as exited:
            call_command("verify_audit_log", stdout=io.StringIO(), stderr=err)
        assert exited.value.code == 1 and "BROKEN at entry 2" in err.getvalue()
        transaction.set_rollback(True)
    with pytest.raises(DatabaseError, match="append-only"):
        raw("DELETE FROM verification_auditentry WHERE seq = 1")
