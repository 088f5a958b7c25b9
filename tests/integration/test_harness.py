"""The harness itself: what makes the integration tests fail loudly and never collide."""
from __future__ import annotations

import os

import pytest

from .harness import (
    DEFAULT_REDIS_URL,
    REDIS_CLAIM_KEY,
    ServiceUnavailable,
    claim_redis_db,
    compose_command,
    database_url_for,
    free_port,
    require_postgres,
    with_bind,
)

pytestmark = pytest.mark.integration


def test_missing_postgres_is_reported_with_the_way_to_fix_it() -> None:
    with pytest.raises(ServiceUnavailable, match="INTEGRATION_DATABASE_URL"):
        require_postgres(f"postgres://postgres@127.0.0.1:{free_port()}/accesscontrol")


def test_missing_redis_is_reported_with_the_way_to_fix_it() -> None:
    with pytest.raises(ServiceUnavailable, match="INTEGRATION_REDIS_URL"):
        claim_redis_db(f"redis://127.0.0.1:{free_port()}")


def test_concurrent_runs_claim_different_redis_databases_and_release_them() -> None:
    import redis

    base = os.environ.get("INTEGRATION_REDIS_URL", DEFAULT_REDIS_URL)
    first, second = claim_redis_db(base), claim_redis_db(base)
    try:
        assert first.db != second.db
    finally:
        first.release()
        second.release()
    for claim in (first, second):
        holder = redis.Redis.from_url(claim.url).get(REDIS_CLAIM_KEY)
        assert holder != claim.token.encode(), "a released database is free for the next run"


def test_worker_url_names_the_test_database_with_quoted_credentials() -> None:
    url = database_url_for({"USER": "ci", "PASSWORD": "p@ss/word", "HOST": "db", "PORT": 5433, "NAME": "test_x_1"})

    assert url == "postgres://ci:p%40ss%2Fword@db:5433/test_x_1"


def test_web_server_runs_the_compose_web_command_on_its_own_address() -> None:
    command = with_bind(compose_command("web"), "127.0.0.1:9999")

    assert command[command.index("--bind") + 1] == "127.0.0.1:9999"
    assert [part for part in command if part != "127.0.0.1:9999"] == [
        part for part in compose_command("web") if part != "0.0.0.0:8000"
    ]


def test_integration_tests_see_postgresql_even_after_unit_tests_used_asgirefs_thread() -> None:
    # A unit test served through Django's ASGI handler leaves asgiref's long-lived sync_to_async thread
    # with a connection to the unit tests' database; an integration test that later reads through that
    # thread must reach PostgreSQL (it once read the wrong database and never saw the worker's decision).
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    tests = [
        "tests/verification/test_checkin_waits.py::test_asgi_path_serves_probes_and_a_waiting_checkin",
        "tests/integration/test_decision_wakeup.py::test_waiter_is_woken_by_the_announcement_not_by_rereading_the_row",
    ]
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
                         cwd=repo, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
