"""The device API: auth, submit, read, errors, with the model boundary faked.

The bad-input table (non-images, formats, people, fields, waits, ids) is one test on the real stack:
tests/integration/test_bad_input.py. Here: auth, configurable limits, 202/200, throttling, 503.
"""
from __future__ import annotations

import re

import pytest

from tests.conftest import upload
from verification import services
from verification.models import AuditEntry, CheckIn

pytestmark = pytest.mark.django_db

URL = "/api/v1/checkins/"


def post(client, data=None, **extra):
    body = {"snapshot": upload(), "person": "B-1001"} if data is None else data
    return client.post(URL, body, format="multipart", **extra)


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"code", "message", "detail"}
    assert body["code"] == code
    assert body["message"]
    return body


# --- 401 -------------------------------------------------------------------------------------


def test_submit_without_token_is_401(anonymous_client):
    response = post(anonymous_client)
    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"] == "Token"
    assert CheckIn.objects.count() == 0


def test_submit_with_unknown_token_is_401(anonymous_client):
    anonymous_client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    assert_error(post(anonymous_client), 401, "authentication_failed")
    assert CheckIn.objects.count() == 0


def test_submit_with_revoked_token_is_401(device_client, device):
    services.device_revoke(device=device)
    assert_error(post(device_client), 401, "authentication_failed")
    assert CheckIn.objects.count() == 0


def test_refused_tokens_are_logged_by_prefix_never_in_full(anonymous_client, device_client, device, caplog):
    anonymous_client.credentials(HTTP_AUTHORIZATION="Token unknown-token-0123456789")
    services.device_revoke(device=device)
    with caplog.at_level("WARNING", logger="verification.api.authentication"):
        post(anonymous_client)
        post(device_client)
    messages = [record.getMessage() for record in caplog.records if record.name == "verification.api.authentication"]
    assert len(messages) == 2 and messages[0].startswith("rejected device token unknown-...")
    assert all("unknown-token-0123456789" not in message for message in messages)


def test_read_without_token_is_401(anonymous_client, device):
    checkin = services.checkin_submit(device=device, person_external_id="B-1001", snapshot_file=upload())
    assert_error(anonymous_client.get(f"{URL}{checkin.pk}/"), 401, "not_authenticated")


# --- 400 -------------------------------------------------------------------------------------


def test_missing_snapshot_is_400(device_client):
    body = assert_error(post(device_client, {"person": "B-1001"}), 400, "invalid")
    assert "snapshot" in body["detail"]
    assert CheckIn.objects.count() == 0


def test_missing_person_is_400(device_client):
    body = assert_error(post(device_client, {"snapshot": upload()}), 400, "invalid")
    assert "person" in body["detail"]


def test_snapshot_over_pixel_limit_is_400(device_client, settings):
    settings.IMAGE_MAX_PIXELS = 100
    body = assert_error(post(device_client), 400, "image_too_large")
    assert body["detail"]["max_pixels"] == 100


def test_snapshot_over_size_limit_is_400(device_client, settings):
    settings.UPLOAD_MAX_BYTES = 50
    assert_error(post(device_client), 400, "file_too_large")


def test_unknown_fields_are_400(device_client):
    body = assert_error(
        post(device_client, {"snapshot": upload(), "person": "B-1001", "admin": "1"}), 400, "invalid"
    )
    assert body["detail"]["unknown_fields"] == ["admin"]
    assert CheckIn.objects.count() == 0


def test_unknown_query_parameter_is_400(device_client):
    response = device_client.post(f"{URL}?debug=1", {"snapshot": upload(), "person": "B-1001"}, format="multipart")
    assert_error(response, 400, "invalid")


# --- 202 / 200 -------------------------------------------------------------------------------


def test_submit_without_wait_is_202_with_the_checkin_url(device_client, monkeypatch):
    monkeypatch.setattr("verification.services.queueing.enqueue", lambda name, object_id: True)  # no worker answers
    response = post(device_client)
    assert response.status_code == 202
    body = response.json()
    checkin = CheckIn.objects.get()
    assert body["id"] == checkin.pk
    assert body["status"] == "pending"
    assert body["decision"] is None
    assert body["url"].endswith(f"{URL}{checkin.pk}/")
    assert response["Location"] == body["url"]
    assert checkin.device.name == "front-door"


@pytest.mark.django_db(transaction=True)
def test_submit_with_wait_returns_200_and_the_decision(device_client, enrolled_person, fake_model, settings):
    settings.CHECKIN_RESPONSE_DETAIL = "full"  # the integrators' answer; the default is coarse (issue 9, item 6)
    response = post(device_client, {"snapshot": upload(), "person": "B-1001", "wait": "5"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "decided"
    assert body["decision"] == 1
    assert body["score"] == pytest.approx(0.9)
    assert body["threshold"] == 0.5
    assert body["model_version"] == "fake-1"
    assert body["person"] == "B-1001"
    assert body["device"] == "front-door"
    assert body["decided_at"]
    assert AuditEntry.objects.filter(checkin_id=body["id"], kind="decision").count() == 1


@pytest.mark.django_db(transaction=True)
def test_wait_given_as_query_parameter_is_honoured(device_client, enrolled_person, fake_model, settings):
    settings.CHECKIN_RESPONSE_DETAIL = "full"
    fake_model.scores = [0.1]
    response = device_client.post(f"{URL}?wait=5", {"snapshot": upload(), "person": "B-1001"}, format="multipart")
    assert response.status_code == 200
    assert (response.json()["decision"], response.json()["reason"]) == (0, "no_match")


# --- GET -------------------------------------------------------------------------------------


def test_read_own_checkin_lists_the_documented_fields(device_client, device, settings):
    settings.CHECKIN_RESPONSE_DETAIL = "full"
    checkin = services.checkin_submit(device=device, person_external_id="B-1001", snapshot_file=upload())
    response = device_client.get(f"{URL}{checkin.pk}/")
    assert response.status_code == 200
    assert {
        "id", "status", "decision", "score", "threshold", "reason", "model_version",
        "person", "device", "created_at", "decided_at",
    } <= set(response.json())


def test_other_devices_checkin_is_404(other_device_client, device):
    checkin = services.checkin_submit(device=device, person_external_id="B-1001", snapshot_file=upload())
    assert_error(other_device_client.get(f"{URL}{checkin.pk}/"), 404, "not_found")


@pytest.mark.parametrize("pk", ["\u00b3", "\u0661", "\uff11", "1\u00b2"])  # superscript, Arabic-Indic, full-width digits
def test_an_id_of_digits_other_than_ascii_is_404_not_a_server_error(device_client, device, pk):
    # str.isdigit() accepts them; int() fails on some ("³") and reads others ("١" as 1) as another id.
    services.checkin_submit(device=device, person_external_id="B-1001", snapshot_file=upload())
    assert_error(device_client.get(f"{URL}{pk}/"), 404, "not_found")


def test_api_refuses_json_bodies(device_client):
    response = device_client.post(URL, {"person": "B-1001"}, format="json")
    assert_error(response, 415, "unsupported_media_type")


def test_rate_limit_per_token_answers_429(device_client, settings, monkeypatch):
    from verification.api.throttling import DeviceRateThrottle

    monkeypatch.setattr(DeviceRateThrottle, "THROTTLE_RATES", {"device": "2/min"})
    assert device_client.get(f"{URL}1/").status_code == 404
    assert device_client.get(f"{URL}1/").status_code == 404
    assert_error(device_client.get(f"{URL}1/"), 429, "throttled")


def test_openapi_schema_and_docs_are_served(client):
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    assert b"/api/v1/checkins/" in schema.content
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    assert b"swagger-ui" in docs.content


def test_the_schema_describes_the_check_in_form_as_the_view_validates_it(client):
    """A generated client (or schemathesis) builds its requests from this: the snapshot is a file upload,
    not a URI, and a blank or whitespace-only claimed person is refused, so the schema must not allow it."""
    import yaml

    from verification.api import views

    schema = yaml.safe_load(client.get("/api/schema/").content)
    body = schema["paths"]["/api/v1/checkins/"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    form = schema["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]
    assert form["properties"]["snapshot"]["format"] == "binary"
    assert form["properties"]["snapshot"]["minLength"] == 1  # an empty file is refused (400 empty_file)
    person = form["properties"]["person"]
    assert person["minLength"] == 1
    assert re.search(person["pattern"], "EMP-1") and not re.search(person["pattern"], "   ")
    assert set(form["required"]) == {"snapshot", "person"}
    assert form["additionalProperties"] is False  # any other field is refused with 400 unknown_fields
    assert set(form["properties"]) == views.ALLOWED_BODY_FIELDS
    (query_wait,) = [p for p in schema["paths"]["/api/v1/checkins/"]["post"]["parameters"] if p["name"] == "wait"]
    assert {k: query_wait["schema"][k] for k in ("minimum", "maximum")} == {
        k: form["properties"]["wait"][k] for k in ("minimum", "maximum")}
    # Polling is throttled like submitting: a client must expect 429 from both.
    assert "429" in schema["paths"]["/api/v1/checkins/{id}/"]["get"]["responses"]


def test_a_renamed_request_component_fails_the_schema_instead_of_serving_it_open():
    from verification.api.schema import close_request_bodies

    with pytest.raises(KeyError, match="CheckInSubmitRequest"):
        close_request_bodies({"components": {"schemas": {"CheckInSubmit": {}}}}, None, None, True)


def test_database_failure_at_submit_is_503_with_retry_after(device_client, monkeypatch, settings):
    from django.db import OperationalError

    from verification.models import CheckIn as CheckInModel

    def database_down(self, *args, **kwargs):
        raise OperationalError("database is down")

    monkeypatch.setattr(CheckInModel, "save", database_down)
    response = post(device_client)
    assert_error(response, 503, "unavailable")
    assert response["Retry-After"] == "5"
    snapshots = settings.MEDIA_ROOT / "snapshots"
    assert not snapshots.exists() or not any(snapshots.iterdir())  # no orphan file left behind


def test_authenticated_request_records_when_the_device_was_last_seen(device_client, device):
    assert device.last_seen_at is None
    device_client.get(f"{URL}1/")
    device.refresh_from_db()
    assert device.last_seen_at is not None


def test_wait_returns_202_when_no_decision_arrives_in_time(device_client, monkeypatch):
    import time as time_module

    monkeypatch.setattr("verification.services.queueing.enqueue", lambda name, object_id: True)  # no worker
    started = time_module.monotonic()
    response = post(device_client, {"snapshot": upload(), "person": "B-1001", "wait": "0.3"})
    elapsed = time_module.monotonic() - started
    assert response.status_code == 202
    assert response.json()["status"] == "pending"
    assert 0.3 <= elapsed < 2.0


def test_oversized_request_is_refused_from_its_content_length(device_client, settings):
    settings.UPLOAD_MAX_BYTES = 1000
    big = upload(b"\xff\xd8" + b"\x00" * 200_000)
    body = assert_error(post(device_client, {"snapshot": big, "person": "B-1001"}), 400, "file_too_large")
    assert body["detail"]["max_bytes"] == 1000
    assert CheckIn.objects.count() == 0
