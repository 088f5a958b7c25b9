"""Secrets and the database in deployment (issue 9, item 9).

- ``.env`` (with ``SECRET_KEY``) was copied into the image by ``COPY . .``: it is excluded from the
  build context and from git.
- The database password had a default and was pasted unescaped into ``DATABASE_URL``: compose requires
  it, and settings build the URL from ``POSTGRES_*`` parts, each percent-encoded.
- The app connected as the PostgreSQL superuser that can drop the audit trigger: migrations run as the
  owner, web/worker/beat as a role with data rights only (``deploy/postgres/10-app-role.sh``).
- The web port was published on all interfaces in plain HTTP: a TLS-terminating proxy publishes the only
  ports, web sits on an internal network.
- A stray ``PYTEST_VERSION`` switched on the committed development key: development defaults need DEBUG.

Nothing is built or started (no Docker engine here): compose is parsed, settings are evaluated afresh
with a given environment.
"""
from __future__ import annotations

import os
import re
import runpy
from pathlib import Path

import pytest
import yaml
from django.core.exceptions import ImproperlyConfigured

REPO = Path(__file__).resolve().parents[2]
SETTINGS = REPO / "accesscontrol" / "settings.py"
HOSTS = {"ALLOWED_HOSTS": "door.example.org"}
PASSWORD = "p/a@s#s:w%rd ?x&y=z"


def load_settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> dict:
    """Evaluate accesscontrol/settings.py afresh with exactly ``env`` (plus PATH/HOME) in the environment."""
    monkeypatch.setattr(os, "environ", {"PATH": os.environ.get("PATH", ""), "HOME": "/tmp", **env})
    return runpy.run_path(str(SETTINGS))


@pytest.fixture(scope="module")
def services() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


# --- development defaults only with DEBUG ---------------------------------------------------------


def test_a_stray_pytest_version_does_not_give_production_the_development_key(monkeypatch):
    with pytest.raises(ImproperlyConfigured, match="SECRET_KEY must be set"):
        load_settings(monkeypatch, PYTEST_VERSION="8.3.0", **HOSTS)


def test_a_stray_pytest_version_does_not_open_the_host_list(monkeypatch):
    with pytest.raises(ImproperlyConfigured, match="ALLOWED_HOSTS must be set"):
        load_settings(monkeypatch, PYTEST_VERSION="8.3.0", SECRET_KEY="k" * 60)


def test_development_defaults_come_with_debug_only(monkeypatch):
    loaded = load_settings(monkeypatch, DEBUG="1")
    assert loaded["SECRET_KEY"].startswith("dev-only-insecure-key")
    assert "localhost" in loaded["ALLOWED_HOSTS"]


# --- the database URL -----------------------------------------------------------------------------


def test_database_parts_with_reserved_characters_reach_the_driver_intact(monkeypatch):
    database = load_settings(
        monkeypatch, SECRET_KEY="k" * 60, **HOSTS,
        POSTGRES_HOST="db", POSTGRES_USER="app@door", POSTGRES_PASSWORD=PASSWORD, POSTGRES_DB="access/control#1",
    )["DATABASES"]["default"]
    assert database["ENGINE"] == "django.db.backends.postgresql"
    assert (database["HOST"], database["PORT"]) == ("db", 5432)
    assert (database["USER"], database["PASSWORD"], database["NAME"]) == ("app@door", PASSWORD, "access/control#1")


def test_database_parts_accept_an_ipv6_host_and_a_port(monkeypatch):
    database = load_settings(
        monkeypatch, SECRET_KEY="k" * 60, **HOSTS, POSTGRES_HOST="fd00::5", POSTGRES_PORT="6432", POSTGRES_PASSWORD="x"
    )["DATABASES"]["default"]
    assert (database["HOST"], database["PORT"], database["USER"], database["NAME"]) == (
        "fd00::5", 6432, "accesscontrol", "accesscontrol"
    )


def test_database_host_without_a_password_stops_start_up(monkeypatch):
    with pytest.raises(ImproperlyConfigured, match="POSTGRES_PASSWORD must be set"):
        load_settings(monkeypatch, SECRET_KEY="k" * 60, **HOSTS, POSTGRES_HOST="db")


def test_database_url_and_parts_together_stop_start_up(monkeypatch):
    with pytest.raises(ImproperlyConfigured, match="not both"):
        load_settings(
            monkeypatch, SECRET_KEY="k" * 60, **HOSTS,
            DATABASE_URL="postgres://u:p@db/x", POSTGRES_HOST="db", POSTGRES_PASSWORD="x",
        )


# --- compose: secrets required, never defaulted, never in the image ------------------------------


def test_dot_env_is_kept_out_of_the_image_and_out_of_git():
    for name in (".dockerignore", ".gitignore"):
        patterns = (REPO / name).read_text().split()
        assert ".env" in patterns, f"{name} must exclude .env"


def test_no_password_in_compose_has_a_default():
    text = (REPO / "docker-compose.yml").read_text()
    assert not re.search(r"\$\{[A-Z_]*PASSWORD:?-", text), "a password must be required (${VAR:?...}), never defaulted"
    assert "DATABASE_URL" not in text, "no URL with a pasted-in password"


def test_database_passwords_are_required_like_the_secret_key(services):
    assert services["db"]["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    assert services["db"]["environment"]["POSTGRES_APP_PASSWORD"].startswith("${POSTGRES_APP_PASSWORD:?")
    assert services["migrate"]["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    for name in ("web", "worker", "beat"):
        assert services[name]["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_APP_PASSWORD:?")


# --- compose: the app is not the database owner --------------------------------------------------


def test_migrations_run_as_the_owner_and_the_app_as_its_own_role(services):
    owner = services["db"]["environment"]["POSTGRES_USER"]
    app_role = services["db"]["environment"]["POSTGRES_APP_USER"]
    assert app_role != owner
    assert services["migrate"]["environment"]["POSTGRES_USER"] == owner
    for name in ("web", "worker", "beat"):
        assert services[name]["environment"]["POSTGRES_USER"] == app_role
    assert "./deploy/postgres:/docker-entrypoint-initdb.d:ro" in services["db"]["volumes"]


def test_the_app_role_gets_data_rights_only():
    script = REPO / "deploy" / "postgres" / "10-app-role.sh"
    assert script.stat().st_mode & 0o111
    text = script.read_text()
    assert "NOSUPERUSER NOCREATEDB NOCREATEROLE" in text
    grants = re.findall(r"GRANT (.+?) ON (?:ALL )?(TABLES|SEQUENCES|DATABASE|SCHEMA)", text)
    rights = {(kind, right.strip()) for privileges, kind in grants for right in privileges.split(",")}
    assert rights == {
        ("TABLES", "SELECT"), ("TABLES", "INSERT"), ("TABLES", "UPDATE"), ("TABLES", "DELETE"),
        ("SEQUENCES", "USAGE"), ("SEQUENCES", "SELECT"), ("SEQUENCES", "UPDATE"),
        ("DATABASE", "CONNECT"), ("DATABASE", "TEMPORARY"), ("SCHEMA", "USAGE"),
    }, "no TRUNCATE (skips the audit trigger), TRIGGER, REFERENCES, CREATE or ALL"
    assert 'ALTER DEFAULT PRIVILEGES FOR ROLE :"owner"' in text, "tables the migrations create later are covered"
    assert ":'app_password'" in text and "$POSTGRES_APP_PASSWORD\"" in text, "the password goes in as a psql variable"


# --- compose: TLS in front, web on the internal network only --------------------------------------


def test_only_the_tls_proxy_publishes_ports(services):
    published = sorted(name for name, service in services.items() if service.get("ports"))
    assert published == ["proxy"]
    assert [port.split(":")[-1] for port in services["proxy"]["ports"]] == ["443", "80"]


def test_web_is_on_the_internal_network_only(compose, services):
    assert compose["networks"]["backend"]["internal"] is True
    for name in ("web", "worker", "beat", "migrate", "db", "redis"):
        assert services[name]["networks"] == ["backend"], name
    assert sorted(services["proxy"]["networks"]) == ["backend", "edge"]


def test_proxy_terminates_tls_with_a_self_signed_default_and_tells_web_the_scheme_and_client(services):
    proxy = services["proxy"]
    assert proxy["image"].startswith("caddy:")
    assert "./deploy/caddy/Caddyfile:/etc/caddy/Caddyfile:ro" in proxy["volumes"]
    assert proxy["environment"]["TLS_CERTIFICATE"] == "${TLS_CERTIFICATE:-internal}"
    caddyfile = (REPO / "deploy" / "caddy" / "Caddyfile").read_text()
    assert "tls {$TLS_CERTIFICATE:internal}" in caddyfile
    assert "reverse_proxy web:8000" in caddyfile
    assert "header_up X-Real-IP {remote_host}" in caddyfile
    web = services["web"]["environment"]
    assert web["SECURE_PROXY_SSL_HEADER"] == "HTTP_X_FORWARDED_PROTO"
    assert web["CLIENT_IP_HEADER"] == "HTTP_X_REAL_IP"


def test_certificates_stay_out_of_git_and_the_image():
    assert "/deploy/caddy/certs/*" in (REPO / ".gitignore").read_text().split()
    ignored = (REPO / ".dockerignore").read_text().split()
    # The image takes only deploy/image_requirements.py from deploy/: never the certificates' folder.
    assert "deploy/caddy/" in ignored or "deploy/" in ignored
