"""Helpers that bring up the real backing services for the integration tests.

Kept free of pytest fixtures so each piece (reach PostgreSQL, claim a Redis database, start and stop
a worker) can be read and reused on its own; ``conftest.py`` wires them into fixtures.
"""
from __future__ import annotations

import ctypes
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/accesscontrol"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"
# Redis databases a test run may claim; 0-7 are left to the demo and to development.
_REDIS_DB_CANDIDATES = range(15, 7, -1)
REDIS_CLAIM_KEY = "accesscontrol:integration:claimed-by"
_REDIS_CLAIM_SECONDS = 2 * 3600


class ServiceUnavailable(RuntimeError):
    """A backing service the integration tests need is not reachable."""


def compose_command(service: str) -> list[str]:
    """The command docker-compose.yml runs for ``service``: the tests run exactly that."""
    spec = yaml.safe_load(COMPOSE_FILE.read_text())
    command = spec["services"][service]["command"]
    if not isinstance(command, list):
        raise ValueError(f"docker-compose.yml: services.{service}.command must be a list (exec form).")
    return [str(part) for part in command]


def require_postgres(database_url: str) -> None:
    """Connect to the server named by ``database_url`` (its maintenance DB) or raise with the fix."""
    import psycopg

    parts = urlsplit(database_url)
    maintenance = urlunsplit(parts._replace(scheme="postgresql", path="/postgres"))
    try:
        with psycopg.connect(maintenance, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        raise ServiceUnavailable(
            f"Integration tests need PostgreSQL at {_redact(database_url)} and could not connect ({exc}). "
            "Start it (e.g. `pg_ctlcluster <version> main start`) or point INTEGRATION_DATABASE_URL at one."
        ) from exc


@dataclass(frozen=True)
class RedisClaim:
    """A Redis database number held by this test run; ``url`` is what the worker and publisher use."""

    url: str
    db: int
    token: str

    def release(self) -> None:
        import redis

        client = redis.Redis.from_url(self.url)
        try:
            # Only drop what this run created, and only if the claim is still ours.
            if client.get(REDIS_CLAIM_KEY) == self.token.encode():
                client.flushdb()
        finally:
            client.close()


def claim_redis_db(base_url: str) -> RedisClaim:
    """Claim a free Redis database number so concurrent test runs never consume each other's tasks.

    The claim is an ``SET NX`` key with an expiry, so a crashed run frees its database eventually.
    Leftover messages of an expired claim are removed before use: a stale task would otherwise be
    picked up by this run's worker.
    """
    import redis

    token = f"{os.getpid()}-{secrets.token_hex(8)}"
    base = base_url.rstrip("/")
    try:
        redis.Redis.from_url(f"{base}/0", socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        raise ServiceUnavailable(
            f"Integration tests need Redis at {_redact(base)} and could not reach it ({exc}). "
            "Start it (`redis-server --daemonize yes`) or point INTEGRATION_REDIS_URL at one."
        ) from exc
    for db in _REDIS_DB_CANDIDATES:
        client = redis.Redis.from_url(f"{base}/{db}")
        try:
            if not client.set(REDIS_CLAIM_KEY, token, nx=True, ex=_REDIS_CLAIM_SECONDS):
                continue
            for key in client.scan_iter(count=500):
                if key != REDIS_CLAIM_KEY.encode():
                    client.delete(key)
            return RedisClaim(url=f"{base}/{db}", db=db, token=token)
        finally:
            client.close()
    raise ServiceUnavailable(
        f"Every Redis database {min(_REDIS_DB_CANDIDATES)}-{max(_REDIS_DB_CANDIDATES)} at {_redact(base)} "
        f"is claimed by another test run (key {REDIS_CLAIM_KEY!r})."
    )


class ManagedProcess:
    """A real server subprocess (celery worker, gunicorn), in its own process group, logging to a file."""

    def __init__(self, command: Sequence[str], env: Mapping[str, str], log_path: Path) -> None:
        self.command = list(command)
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            self.command,
            cwd=REPO_ROOT,
            env=dict(env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: stop() reaches prefork children and gunicorn workers
            preexec_fn=_terminate_with_parent,
        )

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def wait_until_logged(self, marker: str, timeout: float) -> None:
        """Block until ``marker`` appears in the log, or raise with the log if it exits or times out."""
        name = Path(self.command[0]).name
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if marker in self.log_text():
                return
            if self.process.poll() is not None:
                code = self.process.returncode
                raise RuntimeError(f"{name} exited with {code} before it was ready:\n{self.log_tail()}")
            time.sleep(0.25)
        raise RuntimeError(f"{name} not ready after {timeout:.0f}s (waiting for {marker!r}):\n{self.log_tail()}")

    def stop(self, timeout: float = 30.0) -> int:
        """Graceful stop (SIGTERM: celery finishes its task, gunicorn its requests), then SIGKILL."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self._log.close()
        return self.process.returncode


@dataclass(frozen=True)
class WebServer:
    """A running web server process and the base URL it answers on."""

    url: str
    process: ManagedProcess


def _terminate_with_parent() -> None:
    """Runs in the child before exec: on Linux, SIGTERM it when the test process dies.

    A test run killed before its teardown would otherwise leave a worker consuming from a Redis
    database that a later run claims, eating that run's tasks.
    """
    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def with_bind(command: Sequence[str], address: str) -> list[str]:
    """``command`` with the value after ``--bind`` replaced (compose binds 0.0.0.0:8000)."""
    result = list(command)
    result[result.index("--bind") + 1] = address
    return result


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def database_url_for(settings_dict: Mapping[str, object]) -> str:
    """A DATABASE_URL naming exactly the database Django's ``settings_dict`` points at."""
    user = quote(str(settings_dict.get("USER") or ""), safe="")
    password = quote(str(settings_dict.get("PASSWORD") or ""), safe="")
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = str(settings_dict.get("HOST") or "127.0.0.1")
    port = str(settings_dict.get("PORT") or 5432)
    return f"postgres://{credentials}{host}:{port}/{settings_dict['NAME']}"


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url
