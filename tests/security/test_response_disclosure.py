"""The door learns only what it needs (issue 9, item 6).

Threat: a device holder reads every answer. With the score and threshold it can hill-climb (alter
a photo until the score rises past the threshold); with the timings it can tell which checks ran;
with ``unknown_person`` versus ``inactive_person`` (or a face-quality reason, decided only for a
known, admitted person) it learns which badge IDs exist. By default the device now gets the check-in
id, its status, the decision and a coarse reason; the full detail stays in the audit log and is
sent only when ``CHECKIN_RESPONSE_DETAIL=full`` (integrators).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import upload
from verification import services
from verification.models import AuditEntry, CheckIn

URL = "/api/v1/checkins/"
REPO = Path(__file__).resolve().parents[2]
COARSE_FIELDS = {"id", "url", "status", "decision", "reason"}
DETAIL_FIELDS = {"score", "threshold", "timings", "model_version", "created_at", "decided_at"}


def decide(device_client, person: str = "B-1001") -> dict:
    response = device_client.post(URL, {"snapshot": upload(), "person": person, "wait": "5"}, format="multipart")
    assert response.status_code == 200, response.content
    return response.json()


def without_ids(body: dict) -> dict:
    return {key: value for key, value in body.items() if key not in ("id", "url")}


@pytest.mark.django_db(transaction=True)
def test_by_default_the_device_gets_the_decision_a_coarse_reason_and_the_id_only(device_client, enrolled_person, fake_model):
    fake_model.scores = [0.1]
    body = decide(device_client)

    assert set(body) == COARSE_FIELDS
    assert (body["status"], body["decision"], body["reason"]) == ("decided", 0, "not_recognised")
    assert set(device_client.get(body["url"]).json()) == COARSE_FIELDS
    # The full detail is kept: on the row and in the audit log.
    checkin = CheckIn.objects.get(pk=body["id"])
    assert (checkin.reason, checkin.score, checkin.threshold) == ("no_match", pytest.approx(0.1), 0.5)
    audit = AuditEntry.objects.get(checkin=checkin, kind="decision")
    assert (audit.reason, audit.score, audit.threshold) == ("no_match", pytest.approx(0.1), 0.5)
    assert audit.detail["timings"]["total_ms"] >= 0


@pytest.mark.django_db(transaction=True)
def test_an_admission_carries_no_score_either(device_client, enrolled_person, fake_model):
    body = decide(device_client)
    assert set(body) == COARSE_FIELDS
    assert (body["decision"], body["reason"]) == (1, "")


@pytest.mark.django_db(transaction=True)
def test_unknown_inactive_and_unmatched_claims_look_the_same_to_the_device(device_client, enrolled_person, fake_model):
    fake_model.scores = [0.1]
    unmatched = decide(device_client)
    unknown = decide(device_client, "NOBODY")
    enrolled_person.is_active = False
    services.person_save(person=enrolled_person)
    inactive = decide(device_client)

    assert [CheckIn.objects.get(pk=b["id"]).reason for b in (unmatched, unknown, inactive)] == [
        "no_match", "unknown_person", "inactive_person",
    ]
    assert without_ids(unknown) == without_ids(inactive) == without_ids(unmatched)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("reason", ["no_face", "face_too_small", "multiple_faces", "unreadable_image"])
def test_a_face_quality_refusal_does_not_tell_a_stranger_the_badge_exists(device_client, enrolled_person, fake_model, reason):
    """Face checks run only for a known, admitted person: naming them would confirm the badge."""
    fake_model.reject_reason = reason
    known = decide(device_client)
    unknown = decide(device_client, "NOBODY")
    assert CheckIn.objects.get(pk=known["id"]).reason == reason
    assert without_ids(known) == without_ids(unknown)


@pytest.mark.django_db(transaction=True)
def test_a_lockout_is_still_named(device_client, enrolled_person, fake_model):
    fake_model.scores = [0.1]
    for _ in range(5):
        decide(device_client)
    assert decide(device_client)["reason"] == "locked_out"


@pytest.mark.django_db(transaction=True)
def test_integrators_get_the_full_detail_with_the_setting(device_client, enrolled_person, fake_model, settings):
    settings.CHECKIN_RESPONSE_DETAIL = "full"
    fake_model.scores = [0.1]
    body = decide(device_client)
    assert DETAIL_FIELDS <= set(body)
    assert (body["reason"], body["score"], body["threshold"]) == ("no_match", pytest.approx(0.1), 0.5)
    assert body["timings"]["total_ms"] >= 0
    assert decide(device_client, "NOBODY")["reason"] == "unknown_person"


def test_the_schema_documents_the_coarse_answer_and_the_setting(client):
    schema = client.get("/api/schema/").content.decode()
    assert "not_recognised" in schema and "CHECKIN_RESPONSE_DETAIL" in schema


def _settings_value(raw: str) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ.get("PATH", ""), "DEBUG": "1", "DATABASE_URL": "sqlite:///:memory:",
           "CHECKIN_RESPONSE_DETAIL": raw}
    code = "import accesscontrol.settings as s; print(s.CHECKIN_RESPONSE_DETAIL)"
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("raw", "expected"), [("", "coarse"), ("coarse", "coarse"), ("FULL", "full")])
def test_the_detail_setting_is_read_from_the_environment(raw, expected):
    result = _settings_value(raw)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


def test_a_bad_detail_setting_stops_start_up():
    result = _settings_value("verbose")
    assert result.returncode != 0
    assert "CHECKIN_RESPONSE_DETAIL" in result.stderr
