"""Settings helpers fail loudly; production settings refuse unsafe defaults; check --deploy passes."""
from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from accesscontrol.env import env_bool, env_int, env_list, env_str

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


@pytest.mark.parametrize(("raw", "expected"), [("1", True), ("TRUE", True), ("yes", True), ("off", False), ("0", False)])
def test_env_bool_reads_common_spellings(raw, expected):
    assert env_bool("X", not expected, environ={"X": raw}) is expected


def test_env_bool_refuses_anything_else():
    with pytest.raises(ImproperlyConfigured, match="X='maybe'"):
        env_bool("X", False, environ={"X": "maybe"})


def test_env_bool_and_int_use_default_when_unset_or_blank():
    assert env_bool("X", True, environ={"X": "  "}) is True
    assert env_int("N", 7, environ={}) == 7


def test_env_int_parses_underscores_and_enforces_bounds():
    assert env_int("N", 0, environ={"N": "25_000_000"}) == 25_000_000
    with pytest.raises(ImproperlyConfigured, match="not an integer"):
        env_int("N", 0, environ={"N": "ten"})
    with pytest.raises(ImproperlyConfigured, match="below the minimum"):
        env_int("N", 0, minimum=1, environ={"N": "0"})
    with pytest.raises(ImproperlyConfigured, match="above the maximum"):
        env_int("N", 0, maximum=5, environ={"N": "6"})


def test_env_str_required_refuses_missing_value():
    with pytest.raises(ImproperlyConfigured, match="SECRET_KEY must be set"):
        env_str("SECRET_KEY", required=True, environ={})


def test_env_list_splits_and_drops_blanks():
    assert env_list("H", ["x"], environ={"H": "a.example, b.example,,"}) == ["a.example", "b.example"]
    assert env_list("H", ["x"], environ={}) == ["x"]


def _django(args: list[str], **env: str) -> subprocess.CompletedProcess:
    # A clean environment: no PYTEST_VERSION, so the settings behave as in production.
    base = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run(
        [PYTHON, "manage.py", *args], cwd=REPO, env={**base, **env}, capture_output=True, text=True, timeout=120
    )


def test_production_refuses_to_start_without_secret_key():
    result = _django(["check"], ALLOWED_HOSTS="door.example.org")
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_production_refuses_to_start_without_allowed_hosts():
    result = _django(["check"], SECRET_KEY="x" * 60)
    assert result.returncode != 0
    assert "ALLOWED_HOSTS must be set" in result.stderr


def test_bad_numeric_setting_stops_start_up():
    result = _django(["check"], DEBUG="1", UPLOAD_MAX_BYTES="lots", DATABASE_URL="sqlite:///:memory:")
    assert result.returncode != 0
    assert "UPLOAD_MAX_BYTES='lots' is not an integer" in result.stderr


def test_check_deploy_passes_with_the_documented_production_environment(tmp_path):
    result = _django(
        ["check", "--deploy", "--fail-level", "WARNING"],
        SECRET_KEY="k3y-Zq8!pV2#mL9@tR4$wN7%yB1^cF6&hJ0*sD5(gK8)aE3_uI2+oP4=",
        ALLOWED_HOSTS="door.example.org",
        SECURE_SSL_REDIRECT="1",
        SECURE_HSTS_SECONDS="31536000",
        SECURE_HSTS_INCLUDE_SUBDOMAINS="1",
        SECURE_HSTS_PRELOAD="1",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
    )
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout + result.stderr


def test_no_broker_means_tasks_run_in_process(settings):
    # The test run has no CELERY_BROKER_URL.
    assert settings.CELERY_TASK_ALWAYS_EAGER is True
    assert settings.CELERY_TASK_ACKS_LATE and settings.CELERY_TASK_REJECT_ON_WORKER_LOST
    assert settings.CELERY_WORKER_PREFETCH_MULTIPLIER == 1
    assert settings.CELERY_TASK_SERIALIZER == "json"


def test_models_and_migrations_are_in_step(tmp_path):
    result = _django(
        ["makemigrations", "--check", "--dry-run", "verification"],
        DEBUG="1",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_openapi_schema_validates_without_warnings(tmp_path):
    result = _django(
        ["spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml")],
        DEBUG="1",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    schema = (tmp_path / "schema.yaml").read_text()
    assert "/api/v1/checkins/{id}/" in schema and "DeviceToken" in schema


def test_visibility_timeout_shorter_than_a_task_may_run_stops_start_up():
    result = _django(["check"], DEBUG="1", CELERY_TASK_TIME_LIMIT="60", CELERY_VISIBILITY_TIMEOUT="30",
                     DATABASE_URL="sqlite:///:memory:")
    assert result.returncode != 0
    assert "CELERY_VISIBILITY_TIMEOUT must exceed CELERY_TASK_TIME_LIMIT" in result.stderr


def test_broker_and_pool_settings_fit_long_model_loads(settings):
    # An hour before Redis hands a lost worker's task on (the sweep acts sooner), and a replacement
    # pool process gets time to load TensorFlow before Celery gives up on it (see settings.py).
    assert settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] == 3600
    assert settings.CELERY_WORKER_PROC_ALIVE_TIMEOUT >= 60


def test_check_deploy_passes_with_the_production_environment_the_readme_documents(tmp_path):
    readme = (REPO / "README.md").read_text()
    block = next(part for part in readme.split("```") if "check --deploy" in part)
    documented = dict(re.findall(r"\b([A-Z][A-Z_]+)=(\"[^\"]*\"|\S+)", block))
    assert {"DEBUG", "SECRET_KEY", "ALLOWED_HOSTS"} <= set(documented)
    documented["SECRET_KEY"] = secrets.token_urlsafe(50)  # the README generates one with $(python ...)

    result = _django(["check", "--deploy"], **documented, DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")

    assert result.returncode == 0, result.stderr
    # Exactly the two warnings the README announces (HSTS subdomains and preload), nothing else.
    assert sorted(re.findall(r"\(security\.(W\d+)\)", result.stderr + result.stdout)) == ["W005", "W021"]
