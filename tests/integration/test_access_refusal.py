"""Access rights on the real stack (issue 11, item 1): HTTP to gunicorn, PostgreSQL, Redis, a celery worker.

A check-in outside the person's rights is answered by the web process itself: ``wait=0`` gets the final
200 at once (a queued check-in answers 202), the row is decided without a worker ever claiming it
(``attempts`` 0, never queued), and the worker's log shows no task for it. The same person with an
open window at the same door goes through Redis to the worker as before.
"""
from __future__ import annotations

import time
from datetime import time as clock

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from verification import services
from verification.models import AccessGroup, AuditEntry, CheckIn, Door, Zone
from verification.services import access_rules
from verification.services.access import WindowSpec

from .harness import ManagedProcess, WebServer
from .helpers import DECISION_TIMEOUT_S, plain_jpeg, wait_until_final
from .test_http_stack import http

pytestmark = pytest.mark.integration

TASK = "verification.tasks.checkin_process_task"


@pytest.fixture
def door_token(integration_db: ManagedProcess) -> str:
    """A device at "Vault door" (zone "Vault"); group "Vault staff" grants the zone but has no window yet;
    V-1 is a member (no photos: an admitted check-in is refused no_references by the worker, cheaply)."""
    device, token = services.device_create(name="vault-reader")
    vault = access_rules.zone_save(zone=Zone(name="Vault"), operator="it")
    door = access_rules.door_save(door=Door(name="Vault door", zone=vault), operator="it")
    access_rules.device_door_set(device=device, door=door, operator="it")
    group = access_rules.access_group_save(group=AccessGroup(name="Vault staff"), zones=[vault], operator="it")
    person = services.person_create(name="Vera Vault", external_id="V-1")
    access_rules.access_member_add(group=group, person=person, operator="it")
    return token


def post(web_server: WebServer, token: str, *, wait: str) -> tuple[int, dict]:
    fields = {"snapshot": SimpleUploadedFile("door.jpg", plain_jpeg(), "image/jpeg"), "person": "V-1", "wait": wait}
    return http("POST", f"{web_server.url}/api/v1/checkins/", token=token, fields=fields)


def test_a_checkin_outside_the_schedule_is_answered_by_the_web_process_without_the_worker(
    web_server: WebServer, door_token: str, celery_worker: ManagedProcess
) -> None:
    tasks_before = celery_worker.log_text().count(TASK)
    status, body = post(web_server, door_token, wait="0")

    assert status == 200, body  # final at once; a queued check-in with wait=0 answers 202
    assert (body["status"], body["decision"], body["reason"]) == ("decided", 0, "outside_schedule")
    checkin = CheckIn.objects.get(pk=body["id"])
    assert (checkin.status, checkin.reason) == (CheckIn.Status.DECIDED, "outside_schedule")
    assert checkin.attempts == 0 and checkin.queued_at is None, "a worker claimed or was sent the check-in"
    entry = AuditEntry.objects.get(checkin_id=checkin.pk, kind=AuditEntry.Kind.DECISION)
    assert (entry.reason, entry.actor, entry.detail["access"]["door"]) == ("outside_schedule", "device:vault-reader",
                                                                           "Vault door")
    # Nothing reached the worker (give a stray message a moment to show up in its log).
    time.sleep(1.0)
    assert celery_worker.log_text().count(TASK) == tasks_before

    # With a window open all week, the same person at the same door is the worker's again.
    group = AccessGroup.objects.get(name="Vault staff")
    access_rules.access_windows_set(
        group=group, windows=[WindowSpec(day=day, start=clock(0), end=clock(0)) for day in range(7)], operator="it"
    )
    status, body = post(web_server, door_token, wait="10")
    assert status in (200, 202), body
    checkin = wait_until_final(body["id"], timeout=DECISION_TIMEOUT_S)
    assert (checkin.decision, checkin.reason) == (0, "no_references")
    assert checkin.attempts == 1, "the worker claimed it"
    assert celery_worker.log_text().count(TASK) > tasks_before
