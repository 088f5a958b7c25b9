"""Erasure of a person: no file or embedding of theirs remains; the audit stays, pseudonymised."""
from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from tests.conftest import upload
from verification import services
from verification.audit import audit_verify
from verification.models import AuditEntry, CheckIn, Lockout, Person, ReferenceImage

pytestmark = pytest.mark.django_db


def media_files(root) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*") if path.is_file()}


@pytest.fixture
def two_people(device, enrolled_person, fake_model, django_capture_on_commit_callbacks, settings):
    """Ada (B-1001) and Grace (B-2002) enrolled, each with decided check-ins; Ada also locked out."""
    grace = services.person_create(name="Grace Hopper", external_id="B-2002")
    with django_capture_on_commit_callbacks(execute=True):
        services.reference_add(person=enrolled_person, image_file=upload())
        services.reference_add(person=grace, image_file=upload())
    settings.LOCKOUT_PERSON_MAX_FAILURES = 2
    fake_model.scores = [0.1]
    for claimed in ("B-1001", "B-1001", "B-2002"):
        checkin = services.checkin_submit(device=device, person_external_id=claimed, snapshot_file=upload())
        services.checkin_process(checkin_id=checkin.pk)
    assert Lockout.objects.filter(key="B-1001").exists()
    return enrolled_person, grace


def test_erased_person_leaves_no_file_or_embedding_and_the_audit_is_pseudonymised(two_people, settings):
    ada, grace = two_people
    ada_refs = list(ada.references.all())
    ada_checkins = CheckIn.objects.filter(claimed_external_id="B-1001")
    ada_files = {f.name for r in ada_refs for f in (r.image, r.face_crop)} | {
        f.name for c in ada_checkins for f in (c.snapshot, c.probe_face)  # the snapshot and its aligned face
    }
    before = media_files(settings.MEDIA_ROOT)
    assert len(ada_files) == 8 and ada_files <= before

    out = io.StringIO()
    call_command("erase_person", "B-1001", "--operator", "dpo@example.org", stdout=out)

    after = media_files(settings.MEDIA_ROOT)
    assert after == before - ada_files  # all of Ada's files, and only hers
    assert not Person.objects.filter(external_id="B-1001").exists()
    assert not ReferenceImage.objects.filter(pk__in=[r.pk for r in ada_refs]).exists()
    assert ReferenceImage.objects.filter(person=grace, embedding__isnull=False).count() == 1
    checkins = CheckIn.objects.exclude(claimed_external_id="B-2002")
    assert checkins.count() == 2
    pseudonym = checkins.first().claimed_external_id
    assert pseudonym.startswith("erased-")
    assert all(c.claimed_external_id == pseudonym and not c.snapshot and not c.probe_face and c.snapshot_purged_at
               for c in checkins)
    assert Lockout.objects.get().key == pseudonym

    # Nowhere in the audit log is Ada named any more, but her rows are all still there.
    for entry in AuditEntry.objects.all():
        text = " ".join(str(getattr(entry, f.attname)) for f in AuditEntry._meta.concrete_fields)
        assert "B-1001" not in text and "Ada" not in text
    assert AuditEntry.objects.filter(person_external_id=pseudonym, kind="decision").count() == 2
    assert AuditEntry.objects.filter(person_external_id="B-2002", person_name="Grace Hopper").exists()
    receipt = AuditEntry.objects.get(kind="erasure")
    assert receipt.person_external_id == pseudonym
    assert receipt.detail == {
        "person_id": ada.pk, "operator": "dpo@example.org", "references_deleted": 2, "files_deleted": 8,
        "checkins_pseudonymised": 2,
        # two decisions and a lockout, her person_created entry and her two reference_added entries
        "audit_entries_pseudonymised": 6,
    }
    assert f"receipt is audit entry {receipt.seq}" in out.getvalue()
    assert audit_verify()[1] is None


def test_erase_action_in_the_admin_erases_and_reports_the_receipt(two_people, staff_client):
    ada, _ = two_people
    response = staff_client.post(
        reverse("admin:verification_person_changelist"),
        {"action": "erase_people", "_selected_action": [ada.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert b"Erased 1 person(s)" in response.content
    assert not Person.objects.filter(pk=ada.pk).exists()
    assert AuditEntry.objects.get(kind="erasure").detail["operator"] == "officer"
    assert audit_verify()[1] is None


def test_erase_person_command_refuses_an_unknown_id(db):
    with pytest.raises(CommandError, match="No person with external ID 'NOBODY'"):
        call_command("erase_person", "NOBODY", stdout=io.StringIO())
