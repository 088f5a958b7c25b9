"""Static checks of the deployment files: no Docker engine runs here, so nothing is built or started.

What this proves: docker-compose.yml has the services, healthchecks, start order and named volumes
the README promises; web (with beat and migrate) and worker run two targets of one Dockerfile, the web
one without TensorFlow or OpenCV; bin/demo runs the same commands (the integration harness reads them
from this very file, tests/integration/harness.py:compose_command); the Dockerfile installs the project
as the README does and drops root. bin/test-deploy builds and starts it all for real.
"""
from __future__ import annotations

import json
import re
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose: dict) -> dict:
    return compose["services"]


def _command(service: dict) -> list[str]:
    command = service["command"]
    assert isinstance(command, list), "commands are exec-form lists, so no shell re-parses them"
    return command


def test_compose_defines_web_worker_broker_database_migration_and_proxy(services: dict) -> None:
    assert set(services) == {"db", "redis", "migrate", "web", "worker", "beat", "proxy"}


@pytest.mark.parametrize("name", ["db", "redis", "web", "worker"])
def test_long_running_services_have_healthchecks(services: dict, name: str) -> None:
    check = services[name]["healthcheck"]
    assert check["test"][0] in {"CMD", "CMD-SHELL"}
    assert check["interval"] and check["retries"] >= 1


def test_database_healthcheck_asks_postgres_itself(services: dict) -> None:
    assert "pg_isready" in " ".join(services["db"]["healthcheck"]["test"])


def test_redis_healthcheck_pings_redis(services: dict) -> None:
    assert services["redis"]["healthcheck"]["test"][1:] == ["redis-cli", "ping"]


@pytest.mark.parametrize("name", ["web", "worker"])
def test_app_processes_start_after_healthy_backends_and_finished_migrations(services: dict, name: str) -> None:
    depends = services[name]["depends_on"]
    assert depends["db"] == {"condition": "service_healthy"}
    assert depends["redis"] == {"condition": "service_healthy"}
    assert depends["migrate"] == {"condition": "service_completed_successfully"}


def test_migrations_run_once_per_start_against_a_healthy_database(services: dict) -> None:
    migrate = services["migrate"]
    assert _command(migrate) == ["python", "manage.py", "migrate", "--noinput"]
    assert (REPO / "manage.py").is_file()
    assert migrate["depends_on"]["db"] == {"condition": "service_healthy"}
    assert migrate["restart"] == "no", "a one-shot job must not be restarted after it succeeds"


def test_web_beat_and_migrate_run_the_web_image_and_the_worker_its_own(services: dict) -> None:
    for name in ("web", "beat", "migrate"):
        assert services[name]["image"] == "accesscontrol-web:latest"
        assert services[name]["build"] == {"context": ".", "target": "web"}
    assert services["worker"]["image"] == "accesscontrol-worker:latest"
    assert services["worker"]["build"] == {"context": ".", "target": "worker"}
    stages = re.findall(r"^FROM \S+ AS (\S+)$", (REPO / "Dockerfile").read_text(), re.MULTILINE)
    assert {"web", "worker"} <= set(stages)


def test_web_worker_beat_and_migrate_share_one_environment(services: dict) -> None:
    app_services = [services[name] for name in ("web", "worker", "beat", "migrate")]
    environments = [service["environment"] for service in app_services]
    assert all(environment == environments[0] for environment in environments[:3])
    # migrate alone connects as the database owner (issue 9, item 9); everything else is the same.
    credentials = {"POSTGRES_USER", "POSTGRES_PASSWORD"}
    migrate = {key: value for key, value in environments[3].items() if key not in credentials}
    assert migrate == {key: value for key, value in environments[0].items() if key not in credentials}


@pytest.mark.parametrize("name", ["web", "worker", "beat", "migrate"])
def test_app_services_read_optional_settings_from_dot_env(services: dict, name: str) -> None:
    assert services[name]["env_file"] == [{"path": ".env", "required": False}]


def test_environment_is_production_with_a_required_secret(services: dict) -> None:
    env = services["web"]["environment"]
    assert env["DEBUG"] == "0"
    assert env["SECRET_KEY"].startswith("${SECRET_KEY:?"), "compose must refuse to start without SECRET_KEY"
    assert env["POSTGRES_HOST"] == "db" and "DATABASE_URL" not in env, "settings build the URL from the parts"
    assert env["CELERY_BROKER_URL"].startswith("redis://redis:6379/")


def settings_variables() -> set[str]:
    """Every environment variable accesscontrol/settings.py reads (through its env_* helpers)."""
    source = (REPO / "accesscontrol" / "settings.py").read_text()
    return set(re.findall(r'env_(?:bool|int|str|list)\(\s*"([A-Z][A-Z0-9_]*)"', source))


def test_every_compose_variable_is_a_setting_the_app_reads(services: dict) -> None:
    unknown = sorted(set(services["web"]["environment"]) - settings_variables())
    assert not unknown, f"docker-compose.yml sets variables accesscontrol/settings.py never reads: {unknown}"


def test_database_and_media_live_in_named_volumes(compose: dict, services: dict) -> None:
    assert {"db-data", "media"} <= set(compose["volumes"])
    assert "db-data:/var/lib/postgresql/data" in services["db"]["volumes"]
    for name in ("web", "worker"):
        media_root = services[name]["environment"]["MEDIA_ROOT"]
        assert f"media:{media_root}" in services[name]["volumes"], f"{name} must share the media volume"


def test_worker_is_scalable(services: dict) -> None:
    worker = services["worker"]
    # A fixed name or a published port would make `--scale worker=N` fail on the second container.
    assert "container_name" not in worker and "ports" not in worker
    assert "container_name" not in services["web"]


def test_worker_command_is_a_celery_worker_for_this_project(services: dict) -> None:
    command = _command(services["worker"])
    assert command[:4] == ["celery", "-A", "accesscontrol", "worker"]
    assert command[command.index("--concurrency") + 1] == "1", "one process per container: scale by containers"


def test_web_command_serves_the_projects_wsgi_application(services: dict) -> None:
    command = _command(services["web"])
    assert command[0] == "gunicorn"
    module_name, _, attribute = command[1].partition(":")
    module = __import__(module_name, fromlist=[attribute])
    assert callable(getattr(module, attribute))
    assert command[command.index("--bind") + 1] == "0.0.0.0:8000"


def test_beat_schedules_the_sweep_with_a_writable_schedule_file(services: dict) -> None:
    from accesscontrol.celery import app

    command = _command(services["beat"])
    assert command[:4] == ["celery", "-A", "accesscontrol", "beat"]
    # The image's working directory belongs to root; the app user can write only under /tmp and volumes.
    assert command[command.index("--schedule") + 1].startswith("/tmp/")
    assert "ports" not in services["beat"]
    scheduled = {entry["task"] for entry in app.conf.beat_schedule.values()}
    assert "verification.tasks.sweep_stuck_task" in scheduled


def test_demo_runs_the_same_worker_and_web_commands(services: dict) -> None:
    demo = (REPO / "bin" / "demo").read_text()
    worker = " ".join(_command(services["worker"]))
    assert worker in demo, f"bin/demo must start the worker as compose does: {worker}"
    assert " ".join(_command(services["web"])[:2]) in demo


def test_dockerfile_uses_slim_python_installs_like_the_readme_and_drops_root() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    # The oldest supported Python (pyproject.toml's requires-python), the one CI always tests.
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim\b", dockerfile, re.MULTILINE)
    assert re.search(r"^FROM \$\{PYTHON_IMAGE\} AS base$", dockerfile, re.MULTILINE)
    assert ">=3.11," in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert "pip install --no-deps -e ." in dockerfile
    assert "pyproject.toml" in dockerfile, "dependencies come from pyproject.toml, not a second list"
    # Each final image drops root.
    for stage in re.split(r"^FROM ", dockerfile, flags=re.MULTILINE)[1:]:
        if re.match(r"\S+ AS (web|worker)\n", stage):
            users = re.findall(r"^USER (\S+)", stage, re.MULTILINE)
            assert users and users[-1] not in {"root", "0"}, stage.splitlines()[0]


def _image_requirements(group: str) -> list[str]:
    sys.path.insert(0, str(REPO / "deploy"))
    try:
        from image_requirements import image_requirements
    finally:
        sys.path.pop(0)
    return image_requirements(group)


def _names(requirements: list[str]) -> set[str]:
    return {re.match(r"[A-Za-z0-9._-]+", line).group(0).lower() for line in requirements}


TRAINING_ONLY = {"tqdm", "matplotlib", "dlib-bin", "face-recognition-models", "face_recognition_models"}


def test_web_image_installs_no_tensorflow_opencv_or_training_packages() -> None:
    web = _names(_image_requirements("web"))
    assert {"django", "djangorestframework", "celery[redis]", "gunicorn", "pillow"} <= web | {"celery[redis]"}
    assert not {name for name in web if name.startswith(("tensorflow", "opencv", "mtcnn", "keras"))}, web
    assert not web & TRAINING_ONLY


def test_worker_image_adds_litert_and_headless_opencv_of_the_pinned_releases_and_no_tensorflow() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pinned = {line.split("==")[0]: line.split("==")[1] for line in project["optional-dependencies"]["worker"]}
    worker = _image_requirements("worker")
    assert f"ai-edge-litert=={pinned['ai-edge-litert']}" in worker
    assert f"opencv-python-headless=={pinned['opencv-python']}" in worker
    assert not {name for name in _names(worker) if name.startswith(("tensorflow", "keras", "mtcnn"))}, worker
    assert not _names(worker) & TRAINING_ONLY
    assert "opencv-python" not in _names(worker), "the GUI build would be installed too"


def test_dev_install_is_complete_and_training_packages_are_an_extra() -> None:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "accesscontrol[worker]" in extras["dev"] and "accesscontrol[worker]" in extras["train"]
    assert {"tqdm", "matplotlib"} <= _names(extras["train"]) and {"tqdm", "matplotlib"} <= _names(extras["dev"])
    assert "dlib-bin" in _names(extras["train"])
    assert {"tensorflow", "mtcnn"} <= _names(extras["train"]) and {"tensorflow", "mtcnn"} <= _names(extras["dev"])
    base = _names(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"])
    assert not base & (TRAINING_ONLY | {"tensorflow", "opencv-python", "mtcnn"})


def test_dockerfile_default_command_is_the_compose_web_command(services: dict) -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    cmd = re.search(r"^CMD (\[.*\])$", dockerfile, re.MULTILINE)
    assert cmd is not None
    assert json.loads(cmd.group(1)) == _command(services["web"])


def test_dockerignore_keeps_local_state_and_secrets_out_of_the_image() -> None:
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".git", ".venv", ".venv-*", "db.sqlite3", "media/", ".env", ".env.*", "deploy/caddy/"} <= set(ignored)
    # What the build does copy: the requirements script, and setup_demo's faces (package data).
    assert not {"deploy/", "deploy", "verification/demo/"} & set(ignored)


def test_readme_documents_every_setting_the_settings_module_reads() -> None:
    import accesscontrol.settings as settings_module

    documented_in_code = set(re.findall(r"``([A-Z][A-Z0-9_]+)``", settings_module.__doc__))
    variables = settings_variables() | documented_in_code
    assert {"DATABASE_URL", "SECRET_KEY", "CELERY_BROKER_URL"} <= variables, "the env_* scan found nothing"
    readme = (REPO / "README.md").read_text()
    missing = sorted(name for name in variables if f"`{name}`" not in readme)
    assert not missing, f"README.md does not document: {missing}"


def test_readme_starts_with_the_run_and_test_commands() -> None:
    readme = (REPO / "README.md").read_text()
    first_block = readme.split("```")[1]
    assert "bin/demo" in first_block and "bin/test" in first_block
    assert (REPO / "bin" / "demo").stat().st_mode & 0o111 and (REPO / "bin" / "test").stat().st_mode & 0o111


def _probe_url(services: dict, name: str) -> str:
    probe = " ".join(services[name]["healthcheck"]["test"])
    match = re.search(r"http://127\.0\.0\.1:8000(/[a-z]+)", probe)
    assert match, f"{name}'s healthcheck asks no URL of its own process: {probe}"
    return match.group(1)


def test_web_healthcheck_asks_healthz_with_the_images_python(services: dict) -> None:
    test = services["web"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"], "the slim image has no curl or wget: Python's urllib asks"
    assert "urllib.request.urlopen(" in test[3] and "timeout=" in test[3]
    assert _probe_url(services, "web") == "/healthz", "liveness, not readiness: a worker's fault is not web's"


@pytest.mark.django_db
def test_web_healthcheck_url_answers_whatever_the_host_and_tls_settings(services: dict, client, settings) -> None:
    # The probe talks plain HTTP to 127.0.0.1:8000, a host no production ALLOWED_HOSTS lists.
    settings.ALLOWED_HOSTS = ["door.example.org"]
    settings.SECURE_SSL_REDIRECT = True
    for path in (_probe_url(services, "web"), "/readyz"):
        response = client.get(path, HTTP_HOST="127.0.0.1:8000")
        assert response.status_code in (200, 503), f"{path} answered {response.status_code}"
        assert "status" in response.json()


def test_worker_healthcheck_pings_its_own_node_only(services: dict) -> None:
    probe = " ".join(services["worker"]["healthcheck"]["test"])
    assert "celery -A accesscontrol inspect ping" in probe
    # $$ in compose is a literal $: the container's own node, not any worker that answers first.
    # $$(hostname), not $$HOSTNAME: podman's `exec` (where healthchecks run) does not set HOSTNAME.
    assert "--destination celery@$$(hostname)" in probe
