"""Every admin change is in the tamper-evident log, with who made it (issue 9, item 3).

Threat: staff who change who may pass (enrol a stranger, re-activate someone, swap a reference photo,
create or bring back a device, unlock, erase) left no trace in the hash chain; the CSV export could not
be checked on its own; someone with write access to the database could edit a row and recompute the
plain SHA-256 chain, or cut off its tail together with the head row; nobody looked at the chain unless
asked. Now each change appends a chained entry naming the actor and what changed; the export carries
every hashed column plus ``prev_hash`` / ``entry_hash`` (``verify_audit_log --csv FILE``); with
``AUDIT_HMAC_KEY`` entries and the chain head are keyed; beat verifies the chain daily and a break is
logged at ERROR, shown on the admin's front page and posted to ``ALERT_WEBHOOK_URL``.

Each persona is a staff account in exactly one role's group (``verification.roles``), not a superuser.
"""
from __future__ import annotations

import csv
import io
import json
import logging
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.db import connection
from django.db.models import QuerySet
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from tests.conftest import upload
from verification import roles, services
from verification.audit import audit_verify, entry_hash
from verification.models import AuditChainHead, AuditEntry, Device, Lockout, Person, ReferenceImage

pytestmark = pytest.mark.django_db

INLINE = "references"
KEY = "k" * 40


@pytest.fixture
def persona(django_user_model):
    """``persona(roles.OPERATOR)``: a logged-in staff client whose user name is the role's, e.g. ``operator``."""

    def make(role: roles.Role) -> Client:
        username = role.name.lower().replace(" ", "-")
        user = django_user_model.objects.create_user(username, f"{username}@example.org", "pw-not-used-123", is_staff=True)
        user.groups.add(Group.objects.get(name=role.name))
        client = Client()
        client.force_login(user)
        return client

    return make


@pytest.fixture
def operator(persona) -> Client:
    return persona(roles.OPERATOR)


def person_data(person: Person | None = None, *, photo: bool = False, **overrides) -> dict:
    data = {
        "name": person.name if person else "Grace Hopper",
        "external_id": person.external_id if person else "B-2002",
        "is_active": "on" if (person is None or person.is_active) else "",
        f"{INLINE}-TOTAL_FORMS": "1" if photo else "0",
        f"{INLINE}-INITIAL_FORMS": "0",
        f"{INLINE}-MIN_NUM_FORMS": "0",
        f"{INLINE}-MAX_NUM_FORMS": "1000",
    }
    if photo:
        data[f"{INLINE}-0-image"] = upload(name="grace.jpg")
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


def last(kind: str) -> AuditEntry:
    entry = AuditEntry.objects.filter(kind=kind).order_by("-seq").first()
    assert entry is not None, f"no {kind} entry"
    return entry


def action(client: Client, changelist: str, name: str, *objects) -> None:
    response = client.post(reverse(changelist), {"action": name, "_selected_action": [obj.pk for obj in objects]})
    assert response.status_code == 302, response.content[:500]


# --- Each admin change appends an entry naming the actor --------------------------------------------


def test_creating_a_person_with_a_photo_in_the_admin_is_audited_with_the_operator(operator):
    response = operator.post(reverse("admin:verification_person_add"), person_data(photo=True))
    assert response.status_code == 302
    person = Person.objects.get(external_id="B-2002")
    created = last("person_created")
    assert created.actor == "operator"
    assert (created.person_external_id, created.person_name) == ("B-2002", "Grace Hopper")
    assert created.detail["person_id"] == person.pk
    assert created.detail["fields"]["is_active"] is True
    added = last("reference_added")
    reference = person.references.get()
    assert added.actor == "operator" and added.seq > created.seq
    assert added.detail["reference_id"] == reference.pk
    assert added.person_external_id == "B-2002"
    # What changed, never the image: the entry is small and holds no file content.
    assert len(json.dumps(added.detail)) < 500
    assert audit_verify() == (AuditEntry.objects.count(), None)


def test_changing_a_person_records_each_changed_field_with_old_and_new_value(operator, person):
    until = timezone.now().replace(microsecond=0) + timedelta(days=30)
    data = person_data(person, is_active="", valid_until_0=until.strftime("%Y-%m-%d"), valid_until_1=until.strftime("%H:%M:%S"))
    response = operator.post(reverse("admin:verification_person_change", args=[person.pk]), data)
    assert response.status_code == 302, response.content[:2000]
    person.refresh_from_db()
    assert person.is_active is False
    changed = last("person_changed")
    assert changed.actor == "operator"
    assert changed.person_external_id == "B-1001"
    assert changed.detail["changes"]["is_active"] == {"old": True, "new": False}
    assert changed.detail["changes"]["valid_until"] == {"old": None, "new": person.valid_until.isoformat()}
    assert set(changed.detail["changes"]) == {"is_active", "valid_until"}
    # Saving again without a change appends nothing.
    before = AuditEntry.objects.count()
    operator.post(reverse("admin:verification_person_change", args=[person.pk]), person_data(person, **{
        "valid_until_0": until.strftime("%Y-%m-%d"), "valid_until_1": until.strftime("%H:%M:%S"), "is_active": ""}))
    assert AuditEntry.objects.count() == before


def test_renaming_a_person_marks_the_personal_fields_without_copying_them_into_the_hashed_detail(operator, person):
    data = person_data(person, name="Ada King", external_id="B-1002")
    assert operator.post(reverse("admin:verification_person_change", args=[person.pk]), data).status_code == 302
    changed = last("person_changed")
    assert (changed.actor, changed.person_external_id, changed.person_name) == ("operator", "B-1002", "Ada King")
    assert set(changed.detail["changes"]) == {"name", "external_id"}
    # The old values are in the person's earlier entries; the hashed detail (never erasable) holds none.
    assert "Ada Lovelace" not in json.dumps(changed.detail) and "B-1001" not in json.dumps(changed.detail)


def test_deleting_a_person_and_a_reference_in_the_admin_is_audited(operator, enrolled_person):
    reference = enrolled_person.references.get()
    data = person_data(enrolled_person, **{
        f"{INLINE}-TOTAL_FORMS": "1", f"{INLINE}-INITIAL_FORMS": "1", f"{INLINE}-0-id": str(reference.pk),
        f"{INLINE}-0-person": str(enrolled_person.pk), f"{INLINE}-0-DELETE": "on",
    })
    assert operator.post(reverse("admin:verification_person_change", args=[enrolled_person.pk]), data).status_code == 302
    assert not ReferenceImage.objects.filter(pk=reference.pk).exists()
    deleted_ref = last("reference_deleted")
    assert deleted_ref.actor == "operator" and deleted_ref.detail["reference_id"] == reference.pk

    url = reverse("admin:verification_person_delete", args=[enrolled_person.pk])
    assert operator.post(url, {"post": "yes"}).status_code == 302
    deleted = last("person_deleted")
    assert (deleted.actor, deleted.person_external_id) == ("operator", "B-1001")
    assert deleted.detail["person_id"] == enrolled_person.pk
    assert audit_verify() == (AuditEntry.objects.count(), None)


DEVICES = "admin:verification_device_changelist"


def test_creating_a_device_and_issuing_revoking_and_reinstating_its_token_are_audited(operator):
    assert operator.post(reverse("admin:verification_device_add"), {"name": "garage"}).status_code == 302
    device = Device.objects.get(name="garage")
    created = last("device_created")
    assert (created.actor, created.device_ref, created.device_name) == ("operator", device.pk, "garage")
    assert created.detail["token_prefix"] == device.token_prefix

    action(operator, DEVICES, "issue_new_tokens", device)
    device.refresh_from_db()
    issued = last("device_token_issued")
    assert (issued.actor, issued.device_ref) == ("operator", device.pk)
    assert issued.detail["token_prefix"] == device.token_prefix != created.detail["token_prefix"]

    action(operator, DEVICES, "revoke_tokens", device)
    assert (last("device_revoked").actor, last("device_revoked").device_ref) == ("operator", device.pk)
    action(operator, DEVICES, "reinstate_devices", device)
    assert last("device_reinstated").actor == "operator"
    assert audit_verify() == (AuditEntry.objects.count(), None)


def test_unlocking_is_audited_with_the_security_officer(persona):
    lockout = Lockout.objects.create(
        scope=Lockout.Scope.PERSON, key="B-1001", label="B-1001", failures=5,
        locked_until=timezone.now() + timedelta(minutes=10),
    )
    action(persona(roles.SECURITY_OFFICER), "admin:verification_lockout_changelist", "unlock", lockout)
    entry = last("unlock")
    assert (entry.actor, entry.person_external_id) == ("security-officer", "B-1001")


def test_erasing_is_audited_with_the_data_protection_officer(persona, enrolled_person):
    action(persona(roles.DATA_PROTECTION_OFFICER), "admin:verification_person_changelist", "erase_people", enrolled_person)
    assert last("erasure").actor == "data-protection-officer"
    assert audit_verify() == (AuditEntry.objects.count(), None)


def test_decisions_name_the_device_that_asked_as_their_actor(device, enrolled_person, fake_model):
    checkin = services.checkin_submit(device=device, person_external_id="B-1001", snapshot_file=upload())
    services.checkin_process(checkin_id=checkin.pk)
    assert AuditEntry.objects.get(checkin_id=checkin.pk, kind="decision").actor == "device:front-door"
    assert not AuditEntry.objects.filter(actor="").exists()


def test_a_worker_that_loads_a_new_model_version_appends_model_changed_once_per_version(fake_model):
    from verification.services.model_changes import model_change_record

    assert model_change_record() is not None
    assert model_change_record() is None  # the same version again (another process, a redelivery): nothing
    fake_model.version, fake_model.threshold, fake_model.rule = "fake-2", 0.6, "template"
    model_change_record()
    entries = list(AuditEntry.objects.filter(kind="model_changed").order_by("seq"))
    assert [(e.model_version, e.threshold) for e in entries] == [("fake-1", 0.5), ("fake-2", 0.6)]
    assert entries[1].detail["previous_version"] == "fake-1"
    # The rule that turns k references into one score changes with the model: the log says which.
    assert [e.detail["decision_rule"] for e in entries] == ["mean", "template"]
    assert all(e.actor == "system" for e in entries)


# --- The CSV export verifies on its own -------------------------------------------------------------


@pytest.fixture
def history(operator, device, enrolled_person, fake_model) -> None:
    """Admin changes and a decision: entries of several kinds, with and without a person or a device."""
    operator.post(reverse("admin:verification_person_add"), person_data())
    action(operator, DEVICES, "revoke_tokens", device)
    other = services.device_create(name="back-door")[0]
    checkin = services.checkin_submit(device=other, person_external_id="B-1001", snapshot_file=upload())
    services.checkin_process(checkin_id=checkin.pk)


def export(persona, tmp_path: Path, query: str = "") -> Path:
    response = persona(roles.AUDITOR).get(reverse("admin:verification_auditentry_export") + query)
    assert response.status_code == 200
    path = tmp_path / "audit.csv"
    path.write_bytes(b"".join(response.streaming_content))
    return path


def verify_csv(path: Path, *args: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("verify_audit_log", "--csv", str(path), *args, stdout=out, stderr=err)
    except SystemExit as exited:
        return int(exited.code), err.getvalue()
    return 0, out.getvalue()


def test_the_csv_export_carries_actor_detail_and_hashes_and_verifies_on_its_own(persona, history, tmp_path):
    path = export(persona, tmp_path)
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    assert {"actor", "detail", "prev_hash", "entry_hash"} <= set(rows[0])
    assert [int(row["seq"]) for row in rows] == list(range(1, AuditEntry.objects.count() + 1))
    assert {"operator", "device:back-door"} <= {row["actor"] for row in rows}
    assert json.loads(next(row for row in rows if row["kind"] == "person_created" and row["actor"] == "operator")["detail"])
    code, output = verify_csv(path)
    assert code == 0 and f"OK: {len(rows)} audit entries" in output


@pytest.mark.parametrize(
    ("column", "kind"),
    [("actor", "device_revoked"), ("device_name", "decision"), ("detail", "person_created"), ("score", "decision"),
     ("person_name", "decision"), ("created_at", "device_revoked"), ("entry_hash", None)],
)
def test_a_one_character_edit_of_the_exported_file_is_detected(persona, history, tmp_path, column, kind):
    path = export(persona, tmp_path)
    rows = list(csv.reader(io.StringIO(path.read_text())))
    header = rows[0]
    index = header.index(column)
    row = rows[-1] if kind is None else next(r for r in rows[1:] if r[header.index("kind")] == kind)
    value = row[index]
    position = next(i for i, char in enumerate(value) if char.isalnum())  # e.g. a letter of a name, a digit
    row[index] = value[:position] + ("1" if value[position] != "1" else "2") + value[position + 1:]
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    path.write_text(buffer.getvalue())
    code, output = verify_csv(path)
    assert code == 1 and "BROKEN at entry" in output


def test_a_filtered_export_verifies_row_by_row_with_allow_gaps(persona, history, tmp_path):
    path = export(persona, tmp_path, "?kind=decision")
    code, output = verify_csv(path)
    assert code == 1 and "missing" in output  # not a contiguous chain
    code, output = verify_csv(path, "--allow-gaps")
    assert code == 0, output


# --- A keyed chain: a database writer without the key cannot recompute it --------------------------


@pytest.fixture
def audit_key(settings):
    settings.AUDIT_HMAC_KEY = KEY
    return settings


@pytest.fixture
def keyed_history(audit_key, operator, device, enrolled_person, fake_model):
    """Entries of several kinds, every one written with AUDIT_HMAC_KEY set."""
    settings = audit_key
    operator.post(reverse("admin:verification_person_add"), person_data())
    action(operator, DEVICES, "revoke_tokens", device)
    assert audit_verify() == (AuditEntry.objects.count(), None)
    return settings


def _raw_update(**fields) -> None:
    """A database writer's UPDATE (the ORM refuses; the PostgreSQL trigger is dropped by the table owner)."""
    pk = fields.pop("pk")
    QuerySet.update(AuditEntry.objects.filter(pk=pk), **fields)


def recompute_plain_chain(*, relabel: bool) -> None:
    """What a writer without the key can do: recompute every hash with plain SHA-256 and move the head."""
    prev = "0" * 64
    for entry in AuditEntry.objects.order_by("seq"):
        entry.hash_scheme = "sha256-v2"  # the plain scheme's hash; the row keeps its label unless relabelled
        digest = entry_hash(entry, prev)
        changes = {"pk": entry.pk, "prev_hash": prev, "entry_hash": digest}
        if relabel:
            changes["hash_scheme"] = "sha256-v2"
        _raw_update(**changes)
        prev = digest
    AuditChainHead.objects.filter(pk=1).update(last_hash=prev)


@pytest.mark.parametrize("relabel", [False, True], ids=["keep-scheme", "relabel-as-plain"])
def test_with_a_key_an_edit_with_a_recomputed_plain_sha256_chain_fails_verification(keyed_history, relabel):
    assert AuditEntry.objects.filter(hash_scheme="hmac-sha256-v2").count() == AuditEntry.objects.count()
    target = AuditEntry.objects.get(kind="device_revoked")
    _raw_update(pk=target.pk, actor="someone-else")
    recompute_plain_chain(relabel=relabel)
    checked, broken = audit_verify()
    assert broken is not None


def test_the_same_edit_without_a_key_is_what_the_key_is_for(operator, device):
    """Control: without AUDIT_HMAC_KEY the recomputed chain verifies (the limit the key removes)."""
    action(operator, DEVICES, "revoke_tokens", device)
    _raw_update(pk=last("device_revoked").pk, actor="someone-else")
    recompute_plain_chain(relabel=False)
    assert audit_verify() == (AuditEntry.objects.count(), None)
    assert last("device_revoked").actor == "someone-else"


def test_with_a_key_deleting_the_last_entry_and_rewinding_the_head_is_detected(keyed_history):
    entries = list(AuditEntry.objects.order_by("seq"))
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM verification_auditentry WHERE seq = %s", [entries[-1].seq])
    AuditChainHead.objects.filter(pk=1).update(seq=entries[-2].seq, last_hash=entries[-2].entry_hash)
    checked, broken = audit_verify()
    assert broken is not None and "head" in broken.problem


def test_a_keyed_export_verifies_with_the_key_and_not_without(keyed_history, persona, tmp_path):
    path = export(persona, tmp_path)
    assert verify_csv(path)[0] == 0
    keyed_history.AUDIT_HMAC_KEY = ""
    code, output = verify_csv(path)
    assert code == 1 and "AUDIT_HMAC_KEY" in output


def test_erasure_keeps_a_keyed_chain_valid(keyed_history, persona, enrolled_person):
    action(persona(roles.DATA_PROTECTION_OFFICER), "admin:verification_person_changelist", "erase_people", enrolled_person)
    assert audit_verify() == (AuditEntry.objects.count(), None)


def test_a_short_audit_hmac_key_stops_start_up():
    import os
    import subprocess
    import sys

    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "accesscontrol.settings", "DEBUG": "1", "AUDIT_HMAC_KEY": "short"}
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"], env=env, capture_output=True, text=True,
        cwd=Path(__file__).resolve().parents[2], timeout=120,
    )
    assert result.returncode != 0 and "AUDIT_HMAC_KEY" in result.stderr


# --- Beat verifies daily; a break alerts -------------------------------------------------------------


def test_beat_verifies_the_chain_daily():
    entry = django_settings.CELERY_BEAT_SCHEDULE["verify-audit-chain"]
    assert entry["task"] == "verification.tasks.audit_verify_task"
    assert entry["schedule"] == 86_400.0


def test_a_broken_chain_logs_an_error_posts_the_webhook_and_shows_the_admin_banner(
    settings, persona, operator, device, caplog, monkeypatch
):
    from verification import tasks
    from verification.services import alerts

    posted: list[tuple[str, dict, float]] = []

    def fake_urlopen(request, timeout):  # noqa: ANN001
        posted.append((request.full_url, json.loads(request.data), timeout))

        class Response:
            status = 204

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

        return Response()

    monkeypatch.setattr(alerts, "urlopen", fake_urlopen)
    settings.ALERT_WEBHOOK_URL = "https://hooks.example.org/alerts"
    action(operator, DEVICES, "revoke_tokens", device)
    auditor = persona(roles.AUDITOR)
    assert "Audit chain BROKEN" not in auditor.get(reverse("admin:index")).content.decode()
    tasks.audit_verify_task()
    assert not posted

    with connection.cursor() as cursor:
        cursor.execute("UPDATE verification_auditentry SET actor = 'nobody' WHERE kind = 'device_revoked'")
    with caplog.at_level(logging.ERROR):
        result = tasks.audit_verify_task()
    assert result["ok"] is False
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert errors and "audit chain" in errors[0].getMessage().lower()
    assert len(posted) == 1
    url, body, timeout = posted[0]
    assert url == settings.ALERT_WEBHOOK_URL and body["event"] == "audit_chain_broken" and timeout <= 10
    page = auditor.get(reverse("admin:index")).content.decode()
    assert "Audit chain BROKEN" in page


def test_a_failing_webhook_is_logged_and_never_raises(settings, operator, device, caplog, monkeypatch):
    from verification import tasks
    from verification.services import alerts

    def refuse(request, timeout):  # noqa: ANN001
        raise OSError("connection refused")

    monkeypatch.setattr(alerts, "urlopen", refuse)
    settings.ALERT_WEBHOOK_URL = "https://hooks.example.org/alerts"
    action(operator, DEVICES, "revoke_tokens", device)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE verification_auditentry SET actor = 'nobody' WHERE kind = 'device_revoked'")
    with caplog.at_level(logging.WARNING):
        result = tasks.audit_verify_task()
    assert result["ok"] is False
    assert any("webhook" in record.getMessage().lower() for record in caplog.records)
