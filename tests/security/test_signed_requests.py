"""Signed requests, opt-in per device (issue 9, item 7).

Threat: on a network without TLS, someone on the path of a door records a check-in request (token and
all) and sends it again, or alters it. A device given a signing secret must sign every request: an HMAC
over timestamp, nonce, method, path and the body's SHA-256. Unsigned, altered or stale requests and
reused nonces are refused 401 before anything is stored. Devices without a secret are unaffected.
"""
from __future__ import annotations

import hashlib
import io
import secrets
import time

import pytest
from django.core.management import call_command
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart
from rest_framework.test import APIClient

from tests.conftest import image_bytes, upload
from verification import services
from verification.api.signatures import sign
from verification.models import AuditEntry, CheckIn, Device

pytestmark = pytest.mark.django_db

URL = "/api/v1/checkins/"


@pytest.fixture
def signing(device_and_token):
    device, token = device_and_token
    secret = services.device_issue_signing_secret(device=device, operator="tester")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return device, secret, client


def multipart(frame: bytes | None = None, person: str = "B-1001") -> bytes:
    return encode_multipart(BOUNDARY, {"snapshot": upload(frame), "person": person})


def headers(secret: str, body: bytes, *, path: str = URL, method: str = "POST", timestamp: int | None = None,
            nonce: str | None = None) -> dict[str, str]:
    timestamp = str(int(time.time()) if timestamp is None else timestamp)
    nonce = nonce or secrets.token_urlsafe(18)
    signature = sign(secret=secret, timestamp=timestamp, nonce=nonce, method=method, path=path, body=body)
    return {"HTTP_X_SIGNATURE_TIMESTAMP": timestamp, "HTTP_X_SIGNATURE_NONCE": nonce, "HTTP_X_SIGNATURE": signature}


def post(client, body: bytes, **extra):
    return client.generic("POST", URL, body, content_type=MULTIPART_CONTENT, **extra)


def assert_refused(response, code: str) -> None:
    assert response.status_code == 401, response.content
    assert response.json()["code"] == code
    assert response["WWW-Authenticate"] == "Token"
    assert CheckIn.objects.count() == 0


def test_an_unsigned_request_from_a_signing_device_is_refused(signing, enrolled_person, fake_model):
    _, _, client = signing
    assert_refused(post(client, multipart()), "signature_missing")
    # The ordinary multipart helper (token only) is refused the same way.
    assert_refused(client.post(URL, {"snapshot": upload(), "person": "B-1001"}, format="multipart"), "signature_missing")


def test_a_correctly_signed_request_is_accepted_decided_and_stored(
    signing, enrolled_person, fake_model, django_capture_on_commit_callbacks
):
    device, secret, client = signing
    fake_model.scores = [0.99]
    frame = image_bytes(comment=b"signed frame")
    body = multipart(frame)

    with django_capture_on_commit_callbacks(execute=True):  # the queued decision runs in process
        response = post(client, body, **headers(secret, body))

    assert response.status_code == 202, response.content
    checkin = CheckIn.objects.get()
    assert (checkin.device, checkin.status, checkin.decision) == (device, "decided", 1)
    assert checkin.snapshot_sha256 == hashlib.sha256(frame).hexdigest()  # the parsed upload is the signed one
    # Reading the check-in back is signed too (GET, empty body, the path with its query string if any).
    path = f"{URL}{checkin.pk}/"
    assert client.get(path).status_code == 401
    read = client.get(path, **headers(secret, b"", path=path, method="GET"))
    assert read.status_code == 200 and read.json()["decision"] == 1


def test_a_signed_large_snapshot_is_read_past_djangos_in_memory_body_limit(signing, enrolled_person, fake_model, settings):
    _, secret, client = signing
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000  # the body is bigger: it must still be hashed and parsed
    frame = image_bytes(comment=b"x" * 5000)
    body = multipart(frame)
    assert post(client, body, **headers(secret, body)).status_code == 202
    assert CheckIn.objects.get().snapshot_sha256 == hashlib.sha256(frame).hexdigest()


def test_a_tampered_body_is_refused(signing, enrolled_person, fake_model):
    _, secret, client = signing
    signed = multipart(person="B-1001")
    tampered = multipart(person="B-1002")
    assert_refused(post(client, tampered, **headers(secret, signed)), "signature_invalid")
    # Another path, method, or a signature made with another secret are refused alike.
    assert_refused(post(client, signed, **headers(secret, signed, path="/api/v1/other/")), "signature_invalid")
    assert_refused(post(client, signed, **headers(secret, signed, method="PUT")), "signature_invalid")
    assert_refused(post(client, signed, **headers("not-the-secret", signed)), "signature_invalid")


# A future timestamp draws nearer while the request is built and sent: 301 s ahead passed as inside the
# 300 s skew once on a loaded machine, so the future case keeps a margin.
@pytest.mark.parametrize("offset", [-301, 330, -10_000])
def test_a_timestamp_outside_the_skew_is_refused(signing, enrolled_person, fake_model, offset):
    _, secret, client = signing
    body = multipart()
    assert_refused(post(client, body, **headers(secret, body, timestamp=int(time.time()) + offset)), "signature_stale")


def test_the_skew_is_a_setting(signing, enrolled_person, fake_model, settings):
    _, secret, client = signing
    settings.REQUEST_SIGNATURE_MAX_SKEW_SECONDS = 30
    body = multipart()
    assert_refused(post(client, body, **headers(secret, body, timestamp=int(time.time()) - 60)), "signature_stale")
    body = multipart()
    assert post(client, body, **headers(secret, body, timestamp=int(time.time()) - 20)).status_code == 202


def test_a_reused_nonce_is_refused(signing, enrolled_person, fake_model):
    _, secret, client = signing
    body = multipart()
    signed = headers(secret, body)
    assert post(client, body, **signed).status_code == 202
    # The very same request again (a recording), and a new body signed with the spent nonce.
    assert post(client, body, **signed).json()["code"] == "signature_nonce_reused"
    other = multipart()
    response = post(client, other, **headers(secret, other, nonce=signed["HTTP_X_SIGNATURE_NONCE"]))
    assert response.status_code == 401 and response.json()["code"] == "signature_nonce_reused"
    assert CheckIn.objects.count() == 1


@pytest.mark.parametrize(
    "field, value",
    [("HTTP_X_SIGNATURE_NONCE", "short"), ("HTTP_X_SIGNATURE_NONCE", "has spaces in it, 1234567"),
     ("HTTP_X_SIGNATURE_TIMESTAMP", "yesterday"), ("HTTP_X_SIGNATURE", "abc")],
)
def test_malformed_signature_headers_are_refused(signing, enrolled_person, fake_model, field, value):
    _, secret, client = signing
    body = multipart()
    assert_refused(post(client, body, **{**headers(secret, body), field: value}), "signature_malformed")


def test_a_device_without_a_secret_is_unaffected(
    device_client, other_device_and_token, enrolled_person, fake_model, django_capture_on_commit_callbacks
):
    other, _ = other_device_and_token
    services.device_issue_signing_secret(device=other)  # another device signing changes nothing here
    fake_model.scores = [0.99]
    with django_capture_on_commit_callbacks(execute=True):
        response = device_client.post(URL, {"snapshot": upload(), "person": "B-1001"}, format="multipart")
    assert response.status_code == 202, response.content
    assert CheckIn.objects.get().decision == 1


def test_issuing_and_removing_a_secret_is_audited_and_removing_it_turns_signing_off(signing, enrolled_person, fake_model):
    device, secret, client = signing
    assert len(secret) == 64 and Device.objects.get().signing_secret == secret
    services.device_remove_signing_secret(device=device, operator="tester")
    assert client.post(URL, {"snapshot": upload(), "person": "B-1001"}, format="multipart").status_code == 202
    kinds = list(AuditEntry.objects.filter(device_ref=device.pk).values_list("kind", flat=True))
    assert "device_signing_issued" in kinds and "device_signing_removed" in kinds
    assert not any(secret in str(entry.detail) for entry in AuditEntry.objects.all())


def test_a_revoked_device_gets_no_signing_secret(device):
    services.device_revoke(device=device)
    with pytest.raises(Exception, match="revoked"):
        services.device_issue_signing_secret(device=device)


def test_create_device_with_signing_prints_the_secret_once(db):
    out, err = io.StringIO(), io.StringIO()
    call_command("create_device", "side-door", "--signing", stdout=out, stderr=err)
    token, secret = out.getvalue().split()
    device = Device.objects.get(name="side-door")
    assert device.signing_secret == secret and device.token_prefix == token[:8]
    assert "signing secret" in err.getvalue()
    call_command("create_device", "plain-door", stdout=io.StringIO(), stderr=io.StringIO())
    assert not Device.objects.get(name="plain-door").signs_requests
