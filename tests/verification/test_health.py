"""/healthz, /readyz and /metrics (issue 11, item 3).

What this proves: the liveness probe never touches the database and passes the host check and the HTTPS
redirect; readiness names each failing component (database, broker, workers) with a 503 and reports the
in-process mode as such; /metrics is 404 until configured, refuses a missing or wrong token, answers the
right token and an allowed network, and its numbers are the database's rows (decisions by reason, the
latency histogram, lockouts, worker heartbeats) and the broker's queue, not any process's memory.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import OperationalError, connection
from django.utils import timezone

from verification import services
from verification.models import CheckIn, Device, Lockout, WorkerHeartbeat
from verification.monitoring import heartbeat, metrics

REPO = Path(__file__).resolve().parents[2]
TOKEN = "metrics-token-for-tests-0123456789abcdef"


# --- helpers -----------------------------------------------------------------------------------------


@pytest.fixture
def celery_mode(settings):
    """A deployment with a broker (kombu's in-memory transport: reachable, no Redis needed)."""
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.CELERY_BROKER_URL = "memory://"
    return settings


@pytest.fixture
def metrics_token(settings):
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOWED_NETWORKS = []
    return TOKEN


def _checkin(device: Device, *, decision: int | None, reason: str = "", latency_s: float = 0.5,
             status: str = CheckIn.Status.DECIDED) -> CheckIn:
    """A check-in row received ``latency_s`` before its decision (written directly: these tests are
    about counting rows, not about deciding them)."""
    checkin = CheckIn.objects.create(device=device, claimed_external_id="B-1")
    received = timezone.now() - timedelta(minutes=5)
    fields = {"status": status, "created_at": received, "reason": reason}
    if status == CheckIn.Status.DECIDED:
        fields |= {"decision": decision, "decided_at": received + timedelta(seconds=latency_s)}
    CheckIn.objects.filter(pk=checkin.pk).update(**fields)
    return checkin


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus text exposition (labels matched exactly)."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)", line)
        if match is None or match.group(1) != name:
            continue
        found = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
        if found == labels:
            return float(match.group(3))
    raise AssertionError(f"no sample {name}{labels} in:\n{text}")


@pytest.fixture
def door(db) -> Device:
    # Straight into the table: no token or audit entry is needed to count check-ins.
    return Device.objects.create(name="front-door", token_hash="0" * 64, token_prefix="00000000")


def _fresh_worker(version: str = "fake-1", **kwargs) -> WorkerHeartbeat:
    return services.worker_heartbeat_record(worker="celery@w1:101", model_version=version, **kwargs)


# --- /healthz ----------------------------------------------------------------------------------------


def test_healthz_answers_without_touching_the_database(client):
    # No ``db`` fixture: pytest-django fails any test that touches the database.
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "alive"}
    assert response["Cache-Control"] == "no-store"


def test_probes_pass_the_host_check_and_the_https_redirect(client, settings):
    # Docker's probe asks http://127.0.0.1:8000 whatever ALLOWED_HOSTS and SECURE_SSL_REDIRECT say.
    settings.ALLOWED_HOSTS = ["door.example.org"]
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/healthz", HTTP_HOST="127.0.0.1:8000").status_code == 200
    assert client.get("/api/schema/", HTTP_HOST="127.0.0.1:8000").status_code == 400, "other URLs keep the host check"


def test_probes_refuse_writes(client):
    assert client.post("/healthz").status_code == 405


# --- /readyz -----------------------------------------------------------------------------------------


def test_readyz_in_process_mode_is_ready_and_says_there_is_no_worker(client, db, settings):
    assert settings.CELERY_TASK_ALWAYS_EAGER, "the test settings have no broker"
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["mode"] == "in_process" and body["failing"] == []
    assert "in-process" in body["components"]["workers"]["detail"]
    assert body["components"]["broker"]["detail"].startswith("not configured")


def test_readyz_is_ready_with_a_reachable_broker_and_a_fresh_worker_with_the_model(client, db, celery_mode):
    _fresh_worker()
    response = client.get("/readyz")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body == {
        "status": "ready",
        "mode": "celery",
        "failing": [],
        "components": {
            "database": {"ok": True, "detail": "answered"},
            "broker": {"ok": True, "detail": "answered"},
            "workers": {"ok": True, "detail": body["components"]["workers"]["detail"]},
        },
    }
    assert body["components"]["workers"]["detail"].startswith("1 worker process(es) with the model")


def test_readyz_names_the_database_when_it_is_unreachable(client, db, celery_mode, monkeypatch):
    _fresh_worker()

    def refuse(*args, **kwargs):
        raise OperationalError("connection refused")

    with monkeypatch.context() as patch:  # undone before the test database is torn down
        patch.setattr(connection, "cursor", refuse)
        response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert "database" in body["failing"]
    assert body["components"]["database"] == {"ok": False, "detail": "unreachable"}
    assert "refused" not in response.content.decode(), "the driver's message stays in the log"


def test_readyz_names_the_broker_when_it_is_configured_but_unreachable(client, db, celery_mode):
    celery_mode.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    _fresh_worker()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["failing"] == ["broker"]
    assert response.json()["components"]["broker"] == {"ok": False, "detail": "unreachable"}


def test_readyz_names_the_workers_when_no_heartbeat_is_fresh(client, db, celery_mode):
    max_age = celery_mode.WORKER_HEARTBEAT_MAX_AGE_SECONDS
    _fresh_worker(at=timezone.now() - timedelta(seconds=max_age + 1))
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["failing"] == ["workers"]
    assert response.json()["components"]["workers"]["detail"] == f"no worker answered within {max_age} s"


def test_readyz_is_not_ready_while_the_fresh_workers_have_no_model(client, db, celery_mode):
    _fresh_worker(version="", model_error="ModelUnavailable('cannot load')")
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["failing"] == ["workers"]
    assert "none has the model loaded" in response.json()["components"]["workers"]["detail"]


# --- worker heartbeats -------------------------------------------------------------------------------


def test_a_heartbeat_records_the_model_this_process_loaded_and_updates_its_own_row(db, monkeypatch):
    from verification import inference

    monkeypatch.setattr(inference, "loaded_model_version", lambda: "")
    heartbeat.beat_once(worker="celery@w1:7", model_error="ModelUnavailable('no manifest')")
    row = WorkerHeartbeat.objects.get(worker="celery@w1:7")
    assert (row.model_version, row.model_error) == ("", "ModelUnavailable('no manifest')")

    monkeypatch.setattr(inference, "loaded_model_version", lambda: "siamese-7")
    heartbeat.beat_once(worker="celery@w1:7", model_error="ModelUnavailable('no manifest')")
    row.refresh_from_db()
    assert (row.model_version, row.model_error) == ("siamese-7", ""), "a later load clears the error"
    assert WorkerHeartbeat.objects.count() == 1


def test_heartbeats_of_dead_processes_are_pruned_after_a_day(db):
    _fresh_worker(at=timezone.now() - timedelta(days=2))
    services.worker_heartbeat_record(worker="celery@w2:5", model_version="fake-1")
    assert services.worker_heartbeats_prune() == 1
    assert list(WorkerHeartbeat.objects.values_list("worker", flat=True)) == ["celery@w2:5"]


def test_worker_name_is_the_celery_node_and_the_process_id():
    assert heartbeat.worker_name("celery@box") == f"celery@box:{os.getpid()}"


# --- /metrics: who may read it ------------------------------------------------------------------------


def test_metrics_is_404_when_neither_token_nor_networks_are_configured(client, settings):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_NETWORKS = []
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer anything").status_code == 404


def test_metrics_refuses_a_missing_or_wrong_token(client, metrics_token):
    missing = client.get("/metrics")
    assert missing.status_code == 401
    assert missing["WWW-Authenticate"] == 'Bearer realm="metrics"'
    wrong = client.get("/metrics", HTTP_AUTHORIZATION="Bearer " + "x" * len(metrics_token))
    assert wrong.status_code == 401
    assert 'error="invalid_token"' in wrong["WWW-Authenticate"]
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Token {metrics_token}").status_code == 401, "Bearer only"


def test_metrics_answers_the_right_token(client, db, metrics_token):
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {metrics_token}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    assert "accesscontrol_checkins_total 0.0" in response.content.decode()


def test_metrics_answers_an_allowed_network_without_a_token(client, db, settings):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="192.168.1.5").status_code == 403


def test_metrics_network_check_uses_the_proxys_client_address(client, db, settings, metrics_token):
    # Behind the proxy REMOTE_ADDR is the proxy (inside the network); the client is in X-Real-IP.
    settings.CLIENT_IP_HEADER = "HTTP_X_REAL_IP"
    settings.METRICS_ALLOWED_NETWORKS = ["172.16.0.0/12"]
    outside = client.get("/metrics", REMOTE_ADDR="172.18.0.5", HTTP_X_REAL_IP="203.0.113.9")
    assert outside.status_code == 401
    inside = client.get("/metrics", REMOTE_ADDR="172.18.0.7")
    assert inside.status_code == 200


# --- /metrics: what it says ---------------------------------------------------------------------------


def test_metrics_counts_decisions_by_reason_and_the_latency_histogram_from_the_rows(
    client, door, metrics_token
):
    _checkin(door, decision=1, latency_s=0.3)
    _checkin(door, decision=1, latency_s=1.5)
    _checkin(door, decision=0, reason=CheckIn.Reason.NO_MATCH, latency_s=4.0)
    _checkin(door, decision=None, reason=CheckIn.Reason.PROCESSING_ERROR, status=CheckIn.Status.FAILED)
    _checkin(door, decision=None, status=CheckIn.Status.PENDING)

    text = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {metrics_token}").content.decode()

    assert _sample(text, "accesscontrol_checkins_total") == 5
    assert _sample(text, "accesscontrol_decisions_total", decision="admitted", reason="") == 2
    assert _sample(text, "accesscontrol_decisions_total", decision="refused", reason="no_match") == 1
    assert _sample(text, "accesscontrol_decisions_total", decision="refused", reason="no_face") == 0
    assert _sample(text, "accesscontrol_checkins_failed_total", reason="processing_error") == 1
    assert _sample(text, "accesscontrol_checkins_undecided", status="pending") == 1
    assert _sample(text, "accesscontrol_checkin_oldest_undecided_age_seconds") >= 299
    # Cumulative buckets: 0.3 s, 1.5 s and 4 s.
    assert _sample(text, "accesscontrol_decision_latency_seconds_bucket", le="0.25") == 0
    assert _sample(text, "accesscontrol_decision_latency_seconds_bucket", le="0.5") == 1
    assert _sample(text, "accesscontrol_decision_latency_seconds_bucket", le="2.0") == 2
    assert _sample(text, "accesscontrol_decision_latency_seconds_bucket", le="5.0") == 3
    assert _sample(text, "accesscontrol_decision_latency_seconds_bucket", le="+Inf") == 3
    assert _sample(text, "accesscontrol_decision_latency_seconds_count") == 3
    assert _sample(text, "accesscontrol_decision_latency_seconds_sum") == pytest.approx(5.8, abs=1e-3)


def test_metrics_are_the_same_from_any_process_because_they_come_from_the_rows(door):
    _checkin(door, decision=1)
    first = metrics.exposition()
    _checkin(door, decision=1)
    second = metrics.exposition().decode()
    assert _sample(first.decode(), "accesscontrol_decisions_total", decision="admitted", reason="") == 1
    assert _sample(second, "accesscontrol_decisions_total", decision="admitted", reason="") == 2


def test_metrics_report_lockouts_in_force_workers_and_their_model_versions(db, celery_mode):
    now = timezone.now()
    Lockout.objects.create(scope="person", key="B-1", failures=5, locked_until=now + timedelta(minutes=5))
    Lockout.objects.create(scope="person", key="B-2", failures=5, locked_until=now - timedelta(minutes=5))
    Lockout.objects.create(scope="device", key="3", failures=20, locked_until=now + timedelta(minutes=5),
                           unlocked_at=now, unlocked_by="operator")
    _fresh_worker(version="siamese-7")
    services.worker_heartbeat_record(worker="celery@w2:202", model_version="")
    services.worker_heartbeat_record(worker="celery@gone:1", model_version="siamese-6",
                                     at=now - timedelta(hours=1))

    text = metrics.exposition().decode()

    assert _sample(text, "accesscontrol_lockouts_in_force", scope="person") == 1
    assert _sample(text, "accesscontrol_lockouts_in_force", scope="device") == 0
    assert _sample(text, "accesscontrol_workers_ready") == 1
    assert _sample(text, "accesscontrol_worker_info", worker="celery@w1:101", model_version="siamese-7") == 1
    assert _sample(text, "accesscontrol_worker_info", worker="celery@w2:202", model_version="") == 1
    assert "celery@gone:1" not in text, "a stale heartbeat is not a worker"
    assert _sample(text, "accesscontrol_up", component="workers") == 1
    assert _sample(text, "accesscontrol_task_mode_info", mode="celery") == 1


def test_metrics_report_the_broker_queue_depth(db, celery_mode):
    from kombu import Connection

    with Connection("memory://") as conn:
        queue = conn.SimpleQueue("celery")
        for number in range(3):
            queue.put({"n": number})
        try:
            text = metrics.exposition().decode()
        finally:
            queue.clear()
    assert _sample(text, "accesscontrol_queue_depth", queue="celery") == 3
    assert _sample(text, "accesscontrol_up", component="broker") == 1


def test_metrics_without_a_reachable_database_still_answer_and_say_so(db, celery_mode, monkeypatch):
    def refuse(*args, **kwargs):
        raise OperationalError("connection refused")

    with monkeypatch.context() as patch:
        patch.setattr(connection, "cursor", refuse)
        text = metrics.exposition().decode()
    assert _sample(text, "accesscontrol_up", component="database") == 0
    assert "accesscontrol_checkins_total" not in text


# --- settings ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("METRICS_TOKEN", "short", "METRICS_TOKEN must be at least 32 characters"),
        ("METRICS_ALLOWED_NETWORKS", "10.0.0.0/8,not-a-network", "'not-a-network' is not an address or network"),
    ],
)
def test_bad_metrics_settings_stop_start_up(variable, value, message):
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"), "DEBUG": "1",
           "DATABASE_URL": "sqlite:///:memory:", variable: value}
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode != 0
    assert message in result.stderr
