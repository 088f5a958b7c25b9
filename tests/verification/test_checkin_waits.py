"""The API's ``wait`` without Redis (laptop mode) and with a Redis that cannot be reached: it still answers.

The wake-up itself (a real Redis: woken by the announcement, the decision-before-subscription race, Redis
dying mid-wait, 20 doors at once over HTTP) is tested on the real stack in
``tests/integration/test_decision_wakeup.py``.
"""
from __future__ import annotations

import asyncio
import time

import pytest
from django.utils import timezone

from tests.conftest import upload
from verification import services
from verification.models import AuditEntry, CheckIn
from verification.services import waits

URL = "/api/v1/checkins/"


def _dead_redis_url() -> str:
    import socket

    with socket.socket() as probe:  # a port nobody listens on: connections are refused at once
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


class Row:
    """A stand-in for the check-in row: final from ``final_at`` (monotonic) on; counts the reads."""

    def __init__(self, final_at: float) -> None:
        self.final_at = final_at
        self.reads = 0

    def __call__(self, checkin_id: int) -> bool:
        self.reads += 1
        return time.monotonic() >= self.final_at


def test_without_redis_the_wait_rereads_the_row_until_it_is_final(settings):
    settings.CHECKIN_WAKEUP_URL = ""
    row = Row(final_at=time.monotonic() + 0.2)
    started = time.monotonic()

    final = asyncio.run(waits.checkin_wait_final(checkin_id=1, until=started + 5, is_final=row))

    assert final is True
    assert 0.2 <= time.monotonic() - started < 2.0  # found long before the 5 s deadline
    assert row.reads >= 5  # by polling every 10-25 ms: what the notification spares


def test_without_redis_a_wait_that_runs_out_says_not_final(settings):
    settings.CHECKIN_WAKEUP_URL = ""
    row = Row(final_at=float("inf"))
    started = time.monotonic()

    final = asyncio.run(waits.checkin_wait_final(checkin_id=1, until=started + 0.3, is_final=row))

    assert final is False
    assert 0.3 <= time.monotonic() - started < 2.0


def test_with_redis_unreachable_the_wait_falls_back_to_rereading(settings, caplog):
    settings.CHECKIN_WAKEUP_URL = _dead_redis_url()
    row = Row(final_at=time.monotonic() + 0.3)
    started = time.monotonic()

    final = asyncio.run(waits.checkin_wait_final(checkin_id=7, until=started + 5, is_final=row))

    assert final is True
    assert time.monotonic() - started < 3.0  # not the 5 s deadline
    assert "decision notifications unavailable" in caplog.text


def test_a_decision_is_written_even_when_its_announcement_cannot_be_sent(
    device, settings, caplog, django_capture_on_commit_callbacks
):
    settings.CHECKIN_WAKEUP_URL = _dead_redis_url()
    checkin = CheckIn.objects.create(device=device, claimed_external_id="B-1001", status=CheckIn.Status.PROCESSING,
                                     attempts=1)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        decided = services.checkin_decide(checkin_id=checkin.pk, decision=0, reason="no_match", score=0.1,
                                          threshold=0.5, model_version="fake-1")

    assert decided is True
    assert len(callbacks) == 1  # the announcement, queued for after the commit
    checkin.refresh_from_db()
    assert (checkin.status, checkin.decision, checkin.reason) == ("decided", 0, "no_match")
    assert AuditEntry.objects.filter(checkin_id=checkin.pk, kind="decision").count() == 1
    assert f"could not announce check-in {checkin.pk}" in caplog.text


def test_without_a_wakeup_url_nothing_is_announced(device, settings, django_capture_on_commit_callbacks):
    settings.CHECKIN_WAKEUP_URL = ""
    checkin = CheckIn.objects.create(device=device, claimed_external_id="B-1001", status=CheckIn.Status.PROCESSING,
                                     attempts=1)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.checkin_fail(checkin_id=checkin.pk, reason="processing_error", error="boom")

    assert callbacks == []


@pytest.mark.django_db(transaction=True)
def test_api_wait_answers_with_the_decision_when_redis_is_unreachable(
    device_client, enrolled_person, fake_model, settings
):
    # The laptop's in-process tasks decide before the wait starts; the wait must still find the row
    # (and answer 200) when the notification Redis cannot even be reached.
    settings.CHECKIN_WAKEUP_URL = _dead_redis_url()
    response = device_client.post(URL, {"snapshot": upload(), "person": "B-1001", "wait": "5"}, format="multipart")

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["status"], body["decision"]) == ("decided", 1)
    checkin = CheckIn.objects.get(pk=body["id"])
    assert checkin.status == "decided"
    assert AuditEntry.objects.filter(checkin_id=checkin.pk, kind="decision").count() == 1


def test_api_wait_that_runs_out_is_202_with_the_poll_url_under_unreachable_redis(device_client, settings, monkeypatch):
    settings.CHECKIN_WAKEUP_URL = _dead_redis_url()
    monkeypatch.setattr("verification.services.queueing.enqueue", lambda name, object_id: True)  # no worker
    started = time.monotonic()

    response = device_client.post(URL, {"snapshot": upload(), "person": "B-1001", "wait": "0.3"}, format="multipart")

    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "pending"
    assert response["Location"] == body["url"]
    assert 0.3 <= time.monotonic() - started < 5.0  # ends at its deadline (a busy machine adds to the POST)
    assert CheckIn.objects.get(pk=body["id"]).status == "pending"


def test_the_create_view_is_async_and_keeps_its_apiview_for_the_schema():
    from verification.api.views import CheckInCreateView, checkin_create

    assert asyncio.iscoroutinefunction(checkin_create)
    assert checkin_create.cls is CheckInCreateView
    assert checkin_create.csrf_exempt is True


def test_under_asgi_no_middleware_holds_a_thread_for_the_request(settings):
    # A sync-only middleware makes Django run the rest of the chain (a door's wait included) from a thread
    # that blocks until the response: "Asynchronous handler adapted for middleware ..." in its debug log
    # (written with DEBUG on).
    import logging

    from django.core.handlers.asgi import ASGIHandler

    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    logger = logging.getLogger("django.request")  # may not propagate to pytest's handler: listen on it
    handler, level = Collect(level=logging.DEBUG), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    settings.DEBUG = True
    try:
        ASGIHandler()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)

    assert [m for m in messages if "adapted for middleware" in m] == []


@pytest.mark.django_db(transaction=True)
def test_asgi_path_serves_probes_and_a_waiting_checkin(device_and_token, enrolled_person, fake_model, settings):
    # Django's ASGI handler end to end: the async probe middleware, the DRF part in a thread (token,
    # throttle, submit), then the wait on the event loop, answered 200 with the decision.
    from django.test import AsyncClient

    settings.CHECKIN_WAKEUP_URL = ""
    client = AsyncClient()
    token = {"Authorization": f"Token {device_and_token[1]}"}

    async def requests():
        health = await client.get("/healthz")
        unauthenticated = await client.post(URL, {"person": "B-1001"})
        checkin = await client.post(URL, {"snapshot": upload(), "person": "B-1001", "wait": "5"}, headers=token)
        return health, unauthenticated, checkin

    health, unauthenticated, response = asyncio.run(requests())

    assert health.status_code == 200
    assert unauthenticated.status_code == 401
    assert response.status_code == 200, response.content
    assert (response.json()["status"], response.json()["decision"]) == ("decided", 1)
    assert CheckIn.objects.get(pk=response.json()["id"]).status == "decided"


def test_the_asgi_entry_point_pools_postgresql_connections_for_its_own_process_only():
    # Each ASGI request runs its sync part in a thread of its own: connections kept per thread would leak.
    import os
    import subprocess
    import sys

    script = (
        "import os, accesscontrol.asgi\n"
        "from django.conf import settings\n"
        "db = settings.DATABASES['default']\n"
        "print(db['OPTIONS'].get('pool', {}).get('max_size'), db['CONN_MAX_AGE'], os.environ.get('DATABASE_POOL'))\n"
    )
    env = {**os.environ, "DEBUG": "1", "DATABASE_URL": "postgres://u:p@127.0.0.1:5432/x", "DATABASE_CONN_MAX_AGE": "60"}
    env.pop("DATABASE_POOL", None)
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["20", "0", "None"]  # pooled, nothing kept per thread, nothing leaked


def test_the_web_process_imports_the_api_at_boot_not_in_a_doors_request():
    import os
    import subprocess
    import sys

    script = "import sys, accesscontrol.asgi\nprint('verification.api.views' in sys.modules, 'accesscontrol.urls' in sys.modules)\n"
    env = {**os.environ, "DEBUG": "1", "DATABASE_URL": "sqlite:///:memory:"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True"]


def test_waits_in_one_event_loop_share_one_redis_client_and_other_loops_get_their_own(settings):
    settings.CHECKIN_WAKEUP_URL = _dead_redis_url()

    async def two_clients():
        return waits._subscriber_client(), waits._subscriber_client()

    first, again = asyncio.run(two_clients())
    other, _ = asyncio.run(two_clients())
    assert first is again  # no client built per wait
    assert other is not first  # a client's connections belong to the loop that made them


@pytest.mark.django_db
def test_the_row_reader_keeps_the_row_so_the_answer_needs_no_second_read(device, django_assert_num_queries):
    checkin = CheckIn.objects.create(device=device, claimed_external_id="EMP-1", status=CheckIn.Status.PROCESSING)
    read = services.CheckinRowReader()

    with django_assert_num_queries(1):  # the row and its device in one SELECT
        assert read(checkin.pk) is False  # processing: the wait goes on
    assert read.row.pk == checkin.pk and read.row.device == device

    CheckIn.objects.filter(pk=checkin.pk).update(status=CheckIn.Status.DECIDED, decision=1, decided_at=timezone.now())
    assert read(checkin.pk) is True
    assert (read.row.status, read.row.decision) == (CheckIn.Status.DECIDED, 1)
    assert read(checkin.pk + 1000) is False and read.row is None
