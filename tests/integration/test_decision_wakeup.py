"""The wait for a decision on a real Redis and PostgreSQL (issue 12, item 3): woken by the worker's
announcement rather than by re-reading the row, never lost to the decision-before-subscription race or to
Redis dying mid-wait, and 20 doors waiting at once over HTTP (the server of docker-compose.yml's web
command: gunicorn with uvicorn workers, where each wait is a coroutine on the event loop) all answered
with their decisions.
"""
from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection

from verification import services
from verification.models import AuditEntry, CheckIn
from verification.services import waits

from .harness import ManagedProcess, RedisClaim, WebServer, free_port
from .helpers import plain_jpeg, wait_until_final
from .test_http_stack import http

pytestmark = pytest.mark.integration


class CountingRead:
    """The waiter's row read, counted (each call is one query: polling would make dozens)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, checkin_id: int) -> bool:
        self.calls += 1
        final = CheckIn.objects.filter(pk=checkin_id, status__in=waits.FINAL_STATUSES).exists()
        connection.close()  # this runs in asgiref's executor thread: leave no connection behind
        return final


def processing_checkin() -> CheckIn:
    device, _token = services.device_create(name=f"wake-door-{time.monotonic_ns()}")
    return CheckIn.objects.create(device=device, claimed_external_id="GHOST-1", status=CheckIn.Status.PROCESSING,
                                  attempts=1)


def decide_later(checkin_id: int, delay: float) -> threading.Thread:
    """The worker's side, in another thread after ``delay``: the real ``checkin_decide`` (announces on commit)."""

    def decide() -> None:
        time.sleep(delay)
        try:
            services.checkin_decide(checkin_id=checkin_id, decision=0, reason="unknown_person")
        finally:
            connection.close()

    thread = threading.Thread(target=decide)
    thread.start()
    return thread


@pytest.fixture
def wakeup_redis(redis_claim: RedisClaim, settings) -> str:
    settings.CHECKIN_WAKEUP_URL = redis_claim.url
    return redis_claim.url


def test_waiter_is_woken_by_the_announcement_not_by_rereading_the_row(
    transactional_db, wakeup_redis: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The safety re-read pushed far out: only the message can end this wait before 8 s.
    monkeypatch.setattr(waits, "SAFETY_REREAD_SECONDS", 8.0)
    checkin = processing_checkin()
    read = CountingRead()
    started = time.monotonic()
    decider = decide_later(checkin.pk, 0.5)

    final = asyncio.run(waits.checkin_wait_final(checkin_id=checkin.pk, until=started + 8, is_final=read))
    elapsed = time.monotonic() - started
    decider.join()

    assert final is True
    # Woken soon after the decision (0.5 s), long before the deadline and the safety re-read (8 s)...
    assert 0.5 <= elapsed < 3.0
    # ...with two reads: once after subscribing, once on the message (polling every 10-25 ms: dozens).
    assert read.calls == 2
    checkin.refresh_from_db()
    assert checkin.status == "decided"
    assert AuditEntry.objects.filter(checkin_id=checkin.pk, kind="decision").count() == 1


def test_decision_committed_before_the_subscription_is_found_at_once(transactional_db, wakeup_redis: str) -> None:
    # The race: the worker decides (and announces, to nobody) between the view's first read of the row and
    # the waiter's subscription. The waiter must not sleep until its deadline waiting for a message.
    checkin = processing_checkin()
    services.checkin_decide(checkin_id=checkin.pk, decision=0, reason="unknown_person")
    read = CountingRead()
    started = time.monotonic()

    final = asyncio.run(waits.checkin_wait_final(checkin_id=checkin.pk, until=started + 8, is_final=read))

    assert final is True
    assert time.monotonic() - started < 3.0  # not the 8 s deadline
    assert read.calls == 1


def test_a_wait_nobody_answers_ends_at_its_deadline_not_final(transactional_db, wakeup_redis: str) -> None:
    checkin = processing_checkin()
    read = CountingRead()
    started = time.monotonic()

    final = asyncio.run(waits.checkin_wait_final(checkin_id=checkin.pk, until=started + 1.5, is_final=read))

    assert final is False
    assert 1.5 <= time.monotonic() - started < 4.0
    assert read.calls <= 4  # after subscribing, at the 1 s safety re-read, at the deadline: no polling
    assert CheckIn.objects.get(pk=checkin.pk).status == "processing"


def test_redis_dying_mid_wait_loses_no_decision(transactional_db, settings, tmp_path: Path) -> None:
    port = free_port()
    redis = ManagedProcess(["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"], {},
                           tmp_path / "redis.log")
    try:
        redis.wait_until_logged("Ready to accept connections", 30)
        settings.CHECKIN_WAKEUP_URL = f"redis://127.0.0.1:{port}/0"
        checkin = processing_checkin()
        read = CountingRead()
        started = time.monotonic()

        def kill_redis_then_decide() -> None:
            time.sleep(0.3)
            redis.stop()  # the waiter is subscribed by now; its connection drops
            time.sleep(0.4)
            try:
                # Announcing fails (logged): only the waiter's own re-reading can find this decision.
                services.checkin_decide(checkin_id=checkin.pk, decision=0, reason="unknown_person")
            finally:
                connection.close()

        fault = threading.Thread(target=kill_redis_then_decide)
        fault.start()
        final = asyncio.run(waits.checkin_wait_final(checkin_id=checkin.pk, until=started + 8, is_final=read))
        elapsed = time.monotonic() - started
        fault.join()
    finally:
        redis.stop()

    assert final is True
    assert 0.7 <= elapsed < 4.0  # found by re-reading soon after the decision, long before the 8 s deadline
    assert CheckIn.objects.get(pk=checkin.pk).status == "decided"


def test_twenty_doors_waiting_at_once_all_get_their_decisions(web_server: WebServer, integration_db: ManagedProcess) -> None:
    doors = [services.device_create(name=f"rush-door-{i}")[1] for i in range(20)]
    # Warm the path first: the worker's first task may include its model load.
    status, warm = http("POST", f"{web_server.url}/api/v1/checkins/", token=doors[0], fields={
        "snapshot": SimpleUploadedFile("door.jpg", plain_jpeg(), "image/jpeg"), "person": "GHOST-0", "wait": "10"})
    assert status in (200, 202), warm
    wait_until_final(warm["id"])

    def door(index: int) -> tuple[int, dict]:
        fields = {"snapshot": SimpleUploadedFile("door.jpg", plain_jpeg(), "image/jpeg"),
                  "person": f"GHOST-{index}", "wait": "10"}
        return http("POST", f"{web_server.url}/api/v1/checkins/", token=doors[index], fields=fields)

    barrier_start = time.monotonic()
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(door, range(20)))
    elapsed = time.monotonic() - barrier_start

    assert [status for status, _ in answers] == [200] * 20, [(s, b["id"], b["status"]) for s, b in answers]
    assert elapsed < 10  # every answer within its wait
    for index, (_status, body) in enumerate(answers):
        row = CheckIn.objects.get(pk=body["id"])
        assert (body["status"], body["decision"], body["reason"]) == ("decided", 0, "unknown_person")
        assert (row.status, row.decision, row.claimed_external_id) == ("decided", 0, f"GHOST-{index}")
        assert row.device.name == f"rush-door-{index}"
    ids = [body["id"] for _status, body in answers]
    assert len(set(ids)) == 20
    assert AuditEntry.objects.filter(checkin_id__in=ids, kind="decision").count() == 20
