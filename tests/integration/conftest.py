"""Fixtures for the integration tests: the real PostgreSQL, Redis and ``celery worker`` process.

One pytest run, two databases
-----------------------------
``bin/test`` runs the whole suite in one pytest process. Unit and API tests use the SQLite database
that ``accesscontrol.settings`` derives from an unset ``DATABASE_URL``; these tests need PostgreSQL,
shared with a worker process. Settings are read once, before any conftest runs, so this package
overrides pytest-django's ``django_db_setup`` with a *package-scoped* fixture (this directory has an
``__init__.py``, so "package" ends with its last test) that, for this package only:

1. points the ``default`` alias at PostgreSQL (``INTEGRATION_DATABASE_URL``, default
   ``postgres://postgres@127.0.0.1:5432/accesscontrol``) and lets Django create the test database
   ``test_accesscontrol_<pid>`` (unique per run: several runs on one machine never collide);
2. points the Celery app at a Redis database number claimed for this run
   (``INTEGRATION_REDIS_URL``, default ``redis://127.0.0.1:6379``) with eager mode off, so tasks
   really travel through Redis to the worker;
3. starts ``celery worker`` (``celery_worker``; more with ``start_worker``) and, for tests that want
   real HTTP, gunicorn (``web_server``) with the commands docker-compose.yml runs, in production mode,
   their environment naming the same test database, Redis database and media directory;
4. restores everything afterwards. The unit tests' SQLite connection object is set aside and put
   back, never closed: closing an in-memory SQLite test database would erase it.

Rejected: running pytest twice with different environments (a plain ``pytest`` would then run these
on SQLite), and PostgreSQL for every test (the issue wants unit tests on SQLite).

Rows must be committed for the worker to see them, so tests use ``transactional_db``
(``integration_db`` below). A missing PostgreSQL or Redis fails every test here with the reason and the
fix; nothing is ever skipped.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from .harness import (
    DEFAULT_DATABASE_URL,
    DEFAULT_REDIS_URL,
    ManagedProcess,
    RedisClaim,
    ServiceUnavailable,
    WebServer,
    claim_redis_db,
    compose_command,
    database_url_for,
    free_port,
    require_postgres,
    with_bind,
)

# TensorFlow import plus model load on a busy 2-core machine.
WORKER_READY_TIMEOUT_S = 180
WEB_READY_TIMEOUT_S = 60


def _postgres_settings(template: dict, database_url: str) -> dict:
    """``template`` (Django's filled-in defaults) with the connection replaced by ``database_url``."""
    import dj_database_url

    parsed = dj_database_url.parse(database_url)
    if parsed["ENGINE"] != "django.db.backends.postgresql":
        pytest.fail(f"INTEGRATION_DATABASE_URL must name PostgreSQL, got {parsed['ENGINE']}.", pytrace=False)
    merged = {**template, **parsed, "CONN_MAX_AGE": 0, "OPTIONS": parsed.get("OPTIONS", {})}
    merged["TEST"] = {**template.get("TEST", {}), "NAME": f"test_{parsed['NAME']}_{os.getpid()}"}
    return merged


@pytest.fixture(scope="package")
def django_db_setup(
    request: pytest.FixtureRequest,
    django_test_environment: None,
    django_db_blocker,
) -> Iterator[None]:
    from django.conf import settings
    from django.db import connections
    from django.test.utils import setup_databases, teardown_databases

    database_url = os.environ.get("INTEGRATION_DATABASE_URL", DEFAULT_DATABASE_URL)
    try:
        require_postgres(database_url)
    except ServiceUnavailable as exc:
        raise pytest.fail.Exception(str(exc), pytrace=False) from None

    original_settings = settings.DATABASES["default"]
    original_connection = connections["default"]
    # settings.DATABASES and connections.settings are the same dict; new threads read it too.
    settings.DATABASES["default"] = _postgres_settings(original_settings, database_url)
    # Threads that outlive a test (asgiref's sync_to_async thread) keep the connection they opened in the
    # unit tests before this package: forget them all, or their queries go to the unit tests' database.
    _forget_every_threads_connections(connections)
    connections["default"] = connections.create_connection("default")
    try:
        with django_db_blocker.unblock():
            old_config = setup_databases(
                verbosity=request.config.option.verbose,
                interactive=False,
                aliases={"default"},
                serialized_aliases=set(),
            )
        try:
            yield
        finally:
            with django_db_blocker.unblock():
                teardown_databases(old_config, verbosity=request.config.option.verbose)
    finally:
        connections["default"].close()
        settings.DATABASES["default"] = original_settings
        # Connections other threads opened meanwhile still name the dropped integration database.
        _forget_every_threads_connections(connections)
        connections["default"] = original_connection


def _forget_every_threads_connections(connections) -> None:
    """Drop every thread's connection wrappers (not only this thread's): each opens anew from settings."""
    from asgiref.local import Local

    connections._connections = Local(connections.thread_critical)


@pytest.fixture(scope="package")
def redis_claim() -> Iterator[RedisClaim]:
    try:
        claim = claim_redis_db(os.environ.get("INTEGRATION_REDIS_URL", DEFAULT_REDIS_URL))
    except ServiceUnavailable as exc:
        raise pytest.fail.Exception(str(exc), pytrace=False) from None
    yield claim
    claim.release()


@pytest.fixture(scope="package")
def integration_media_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One media directory shared by this process (uploads) and the worker (reads them)."""
    return tmp_path_factory.mktemp("integration-media")


@pytest.fixture(scope="package")
def celery_publisher(redis_claim: RedisClaim) -> Iterator[str]:
    """Make this process publish tasks to the claimed Redis database instead of running them eagerly."""
    from django.test import override_settings

    from accesscontrol.celery import app

    saved = {key: app.conf[key] for key in ("broker_url", "task_always_eager")}
    override = override_settings(CELERY_BROKER_URL=redis_claim.url, CELERY_TASK_ALWAYS_EAGER=False)
    override.enable()
    app.conf.update(broker_url=redis_claim.url, task_always_eager=False)
    _drop_broker_connections(app)
    yield redis_claim.url
    app.conf.update(saved)
    _drop_broker_connections(app)
    override.disable()


def _drop_broker_connections(app) -> None:
    # The app caches its connection and producer pools, built from broker_url on first publish; a
    # pool cached before the switch would keep talking to the old broker. The pools themselves are
    # kombu's process-wide ones, shared by URL, so they are forgotten here, never closed.
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture(scope="package")
def service_env(django_db_setup: None, celery_publisher: str, integration_media_root: Path) -> dict[str, str]:
    """Environment for the worker and web subprocesses: production mode, this run's DB/Redis/media."""
    from django.conf import settings
    from django.db import connections

    env = {key: value for key, value in os.environ.items() if key != "PYTEST_VERSION"}
    env.update(
        # They run as production does (DEBUG off), so secret and hosts are given explicitly.
        DEBUG="0",
        SECRET_KEY=settings.SECRET_KEY,
        ALLOWED_HOSTS="127.0.0.1,localhost",
        DATABASE_URL=database_url_for(connections["default"].settings_dict),
        CELERY_BROKER_URL=celery_publisher,
        MEDIA_ROOT=str(integration_media_root),
        DJANGO_SETTINGS_MODULE="accesscontrol.settings",
        PYTHONUNBUFFERED="1",
        CHECKIN_RESPONSE_DETAIL="full",
        # `celery` and `gunicorn` must be this interpreter's, whichever environment runs the tests.
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    return env


@pytest.fixture(scope="package")
def celery_worker(service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedProcess]:
    """A real worker process, started with docker-compose.yml's worker command, stopped at teardown."""
    command = [*compose_command("worker"), "--hostname", f"integration-{os.getpid()}@%h"]
    worker = ManagedProcess(command, service_env, tmp_path_factory.mktemp("celery") / "worker.log")
    try:
        worker.wait_until_logged(" ready.", WORKER_READY_TIMEOUT_S)  # "<nodename> ready." once consuming
    except RuntimeError as exc:
        worker.stop()
        raise pytest.fail.Exception(str(exc), pytrace=False) from None
    yield worker
    worker.stop()


@pytest.fixture
def start_worker(
    service_env: dict[str, str], tmp_path: Path
) -> Iterator[Callable[..., ManagedProcess]]:
    """Start more real workers for one test (fault tests kill them); all are stopped at its end.

    ``start_worker("victim", extra_env={"CELERY_TASK_TIME_LIMIT": "5"})`` starts the compose worker
    command with node name ``victim-<pid>@<host>`` on this run's database, Redis database and media.
    """
    started: list[ManagedProcess] = []

    def start(name: str, *, extra_env: Mapping[str, str] | None = None, ready: bool = True) -> ManagedProcess:
        command = [*compose_command("worker"), "--hostname", f"{name}-{os.getpid()}@%h"]
        worker = ManagedProcess(command, {**service_env, **(extra_env or {})}, tmp_path / f"{name}.log")
        started.append(worker)
        if ready:
            try:
                worker.wait_until_logged(" ready.", WORKER_READY_TIMEOUT_S)
            except RuntimeError as exc:
                raise pytest.fail.Exception(str(exc), pytrace=False) from None
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture(scope="package")
def web_server(service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    """gunicorn with docker-compose.yml's web command, bound to a free local port."""
    port = free_port()
    command = with_bind(compose_command("web"), f"127.0.0.1:{port}")
    server = ManagedProcess(command, service_env, tmp_path_factory.mktemp("gunicorn") / "web.log")
    try:
        server.wait_until_logged("Booting worker", WEB_READY_TIMEOUT_S)
    except RuntimeError as exc:
        server.stop()
        raise pytest.fail.Exception(str(exc), pytrace=False) from None
    yield WebServer(url=f"http://127.0.0.1:{port}", process=server)
    server.stop()


@pytest.fixture
def integration_db(
    transactional_db: None, celery_worker: ManagedProcess, integration_media_root: Path, settings
) -> ManagedProcess:
    """Committed database rows plus the running worker; every integration test starts here."""
    # Requested after the suite-wide autouse fixtures, so this wins over a per-test temporary
    # MEDIA_ROOT: uploads must land where the worker looks.
    settings.MEDIA_ROOT = integration_media_root
    # These tests compare the device's answer with the row, so they read it as an integrator does
    # (the default answer is coarse: issue 9, item 6); the web server gets the same in service_env.
    settings.CHECKIN_RESPONSE_DETAIL = "full"
    return celery_worker


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[pytest.TestReport]:
    """Attach the server logs to a failing test: the decision was made (or not) over there."""
    report = yield
    if report.failed:
        funcargs = getattr(item, "funcargs", {})
        worker, web = funcargs.get("celery_worker"), funcargs.get("web_server")
        if isinstance(worker, ManagedProcess):
            report.sections.append(("celery worker log (last 60 lines)", worker.log_tail(60)))
        if isinstance(web, WebServer):
            report.sections.append(("gunicorn log (last 30 lines)", web.process.log_tail(30)))
    return report
