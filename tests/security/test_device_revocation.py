"""A revoked device stays revoked; reinstating is explicit and audited; its queued check-ins are refused.

Threat: whoever holds a device (or its token) after an operator revoked it: a stolen door unit, a
leaked token. "Issue new tokens" used to clear the revocation without an audit entry, so the device
came back unnoticed; check-ins it queued just before the revocation were still decided; tokens never
expired. Now issuing is refused for a revoked device, reinstating is its own audited action with a new
token, the worker refuses queued check-ins of a revoked device (``device_revoked``), and
``DEVICE_TOKEN_MAX_AGE_DAYS`` optionally expires tokens.
"""
from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.conftest import upload
from verification import selectors, services
from verification.errors import DeviceRevoked, DomainError
from verification.models import AuditEntry, CheckIn, Device, Lockout

pytestmark = pytest.mark.django_db

URL = "/api/v1/checkins/"
REPO = Path(__file__).resolve().parents[2]


def run_action(staff_client, action: str, device: Device):
    response = staff_client.post(
        reverse("admin:verification_device_changelist"),
        {"action": action, "_selected_action": [device.pk]},
        follow=True,
    )
    assert response.status_code == 200
    return [str(message) for message in response.context["messages"]]


def shown_token(messages: list[str]) -> str:
    return next(m for m in messages if "shown only now" in m).split("<code>")[1].split("</code>")[0]


# --- A revoked device stays revoked ----------------------------------------------------------


def test_issue_new_tokens_on_a_revoked_device_is_refused_and_it_stays_revoked(staff_client, device_and_token):
    device, old_token = device_and_token
    services.device_revoke(device=device)
    device.refresh_from_db()
    revoked_at, token_hash = device.revoked_at, device.token_hash

    messages = run_action(staff_client, "issue_new_tokens", device)

    device.refresh_from_db()
    assert (device.revoked_at, device.token_hash) == (revoked_at, token_hash)
    assert not any("shown only now" in m for m in messages)
    assert any("revoked" in m and "Reinstate" in m for m in messages), messages
    assert selectors.device_by_token(raw_token=old_token) is None
    assert list(AuditEntry.objects.order_by("seq").values_list("kind", flat=True)) == ["device_created", "device_revoked"]


def test_issuing_a_token_from_an_instance_loaded_before_the_revocation_is_refused(device):
    stale = Device.objects.get(pk=device.pk)
    services.device_revoke(device=Device.objects.get(pk=device.pk))
    with pytest.raises(DeviceRevoked):
        services.device_issue_token(device=stale)
    device.refresh_from_db()
    assert device.revoked_at is not None


def test_issuing_a_token_for_an_active_device_still_rotates_it(device_and_token):
    device, old_token = device_and_token
    new_token = services.device_issue_token(device=device)
    assert selectors.device_by_token(raw_token=old_token) is None
    assert selectors.device_by_token(raw_token=new_token) == device


# --- Reinstating is explicit and audited ------------------------------------------------------


def test_reinstate_action_brings_the_device_back_with_a_new_token_and_an_audit_entry(staff_client, device_and_token):
    device, old_token = device_and_token
    services.device_revoke(device=device)

    messages = run_action(staff_client, "reinstate_devices", device)

    device.refresh_from_db()
    assert device.revoked_at is None
    new_token = shown_token(messages)
    assert selectors.device_by_token(raw_token=new_token) == device
    assert selectors.device_by_token(raw_token=old_token) is None  # the revoked token stays dead
    entry = AuditEntry.objects.order_by("-seq").first()
    assert (entry.kind, entry.device_ref, entry.device_name) == ("device_reinstated", device.pk, "front-door")
    assert entry.detail["operator"] == "officer"
    assert entry.detail["token_prefix"] == new_token[:8]


def test_reinstating_a_device_that_is_not_revoked_is_refused_and_not_audited(device):
    with pytest.raises(DomainError) as refused:
        services.device_reinstate(device=device, operator="officer")
    assert refused.value.code == "device_not_revoked"
    assert not AuditEntry.objects.exclude(kind="device_created").exists()


# --- Check-ins queued before the revocation ---------------------------------------------------


def test_checkin_queued_before_the_revocation_is_refused_device_revoked(
    device, enrolled_person, fake_model, settings, django_capture_on_commit_callbacks
):
    settings.LOCKOUT_PERSON_MAX_FAILURES = 1
    with django_capture_on_commit_callbacks(execute=False):  # queued, not yet processed
        checkin = services.checkin_submit(device=device, person_external_id="B-1001", snapshot_file=upload())
    services.device_revoke(device=device)
    embedded_before = fake_model.calls["embed_face"]  # the reference photo's embedding

    services.checkin_process(checkin_id=checkin.pk)

    checkin.refresh_from_db()
    assert (checkin.status, checkin.decision, checkin.reason) == ("decided", 0, "device_revoked")
    assert fake_model.calls["embed_face"] == embedded_before  # refused before any face work
    entry = AuditEntry.objects.get(checkin_id=checkin.pk, kind="decision")
    assert (entry.decision, entry.reason) == (0, "device_revoked")
    # A revoked door is not the person's failure: it must not lock them out at the other doors.
    assert not Lockout.objects.filter(scope="person").exists()


def test_the_api_schema_names_the_device_revoked_reason(client):
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    assert b"device_revoked" in schema.content


# --- Optional token expiry --------------------------------------------------------------------


def post(client):
    return client.post(URL, {"snapshot": upload(), "person": "B-1001"}, format="multipart")


def issued_days_ago(device: Device, days: float) -> None:
    Device.objects.filter(pk=device.pk).update(token_issued_at=timezone.now() - timedelta(days=days))


def test_token_older_than_the_maximum_age_is_refused(device_client, device, settings, monkeypatch):
    monkeypatch.setattr("verification.services.queueing.enqueue", lambda task, object_id: True)
    settings.DEVICE_TOKEN_MAX_AGE_DAYS = 30
    issued_days_ago(device, 31)
    response = post(device_client)
    assert response.status_code == 401
    assert response.json()["code"] == "authentication_failed"
    assert "expired" in response.json()["message"]
    assert CheckIn.objects.count() == 0

    issued_days_ago(device, 29)
    assert post(device_client).status_code == 202


def test_tokens_do_not_expire_by_default(device_client, device, settings, monkeypatch):
    monkeypatch.setattr("verification.services.queueing.enqueue", lambda task, object_id: True)
    assert settings.DEVICE_TOKEN_MAX_AGE_DAYS is None
    issued_days_ago(device, 3650)
    assert post(device_client).status_code == 202


def test_a_new_token_restarts_the_clock(device, settings):
    settings.DEVICE_TOKEN_MAX_AGE_DAYS = 30
    issued_days_ago(device, 31)
    services.device_issue_token(device=device)
    device.refresh_from_db()
    assert timezone.now() - device.token_issued_at < timedelta(minutes=1)


@pytest.mark.parametrize(("raw", "expected"), [("", "None"), ("0", "None"), ("90", "90")])
def test_token_max_age_is_read_from_the_environment(raw, expected):
    env = {"PATH": os.environ.get("PATH", ""), "DEBUG": "1", "DATABASE_URL": "sqlite:///:memory:",
           "DEVICE_TOKEN_MAX_AGE_DAYS": raw}
    code = "import accesscontrol.settings as s; print(s.DEVICE_TOKEN_MAX_AGE_DAYS)"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


def test_a_bad_token_max_age_stops_start_up():
    env = {"PATH": os.environ.get("PATH", ""), "DEBUG": "1", "DATABASE_URL": "sqlite:///:memory:",
           "DEVICE_TOKEN_MAX_AGE_DAYS": "-1"}
    result = subprocess.run([sys.executable, "-c", "import accesscontrol.settings"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "DEVICE_TOKEN_MAX_AGE_DAYS" in result.stderr
