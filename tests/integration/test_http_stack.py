"""The door's real path: HTTP to gunicorn (docker-compose.yml's web command, DEBUG off) -> PostgreSQL
-> Redis -> celery worker process -> decision read back over HTTP.
"""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart

from verification import services
from verification.models import AuditEntry

from .harness import ManagedProcess, WebServer
from .helpers import DECISION_TIMEOUT_S, plain_jpeg

pytestmark = pytest.mark.integration


def http(method: str, url: str, *, token: str | None = None, fields: dict | None = None) -> tuple[int, dict]:
    headers = {"Authorization": f"Token {token}"} if token else {}
    body = None
    if fields is not None:
        body = encode_multipart(BOUNDARY, fields)
        headers["Content-Type"] = MULTIPART_CONTENT
    request = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture
def token(integration_db: ManagedProcess) -> str:
    return services.device_create(name="http-door")[1]


def test_gunicorn_refuses_a_request_without_a_token(web_server: WebServer, integration_db: ManagedProcess) -> None:
    status, body = http("GET", f"{web_server.url}/api/v1/checkins/1/")

    assert status == 401
    assert set(body) >= {"code", "message"}


def test_checkin_over_http_returns_the_workers_decision_within_wait(web_server: WebServer, token: str) -> None:
    snapshot = {"snapshot": SimpleUploadedFile("door.jpg", plain_jpeg(), "image/jpeg"), "person": "GHOST-1"}

    # The first task may include the worker's model load; follow the check-in's URL until decided.
    status, first = http("POST", f"{web_server.url}/api/v1/checkins/", token=token, fields={**snapshot, "wait": "10"})
    assert status in (200, 202), first
    deadline = time.monotonic() + DECISION_TIMEOUT_S
    while first["status"] not in ("decided", "failed") and time.monotonic() < deadline:
        time.sleep(0.5)
        status, first = http("GET", first["url"], token=token)
    assert (first["status"], first["decision"], first["reason"]) == ("decided", 0, "unknown_person")

    # With the model loaded, `wait` holds the request until the worker has decided. A new frame
    # (plain_jpeg() makes new bytes per call): the same bytes again would be refused `replayed`.
    snapshot["snapshot"] = SimpleUploadedFile("door.jpg", plain_jpeg(), "image/jpeg")
    status, second = http("POST", f"{web_server.url}/api/v1/checkins/", token=token, fields={**snapshot, "wait": "10"})
    assert status == 200, second
    assert (second["status"], second["decision"], second["reason"]) == ("decided", 0, "unknown_person")
    assert second["device"] == "http-door" and second["model_version"]
    assert AuditEntry.objects.filter(checkin_id__in=[first["id"], second["id"]], kind="decision").count() == 2
