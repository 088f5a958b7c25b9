"""Throttles and admin-login counters are shared by every process (issue 9, item 8).

DRF's counters lived in each gunicorn worker's memory (no ``CACHES`` setting: local memory), so two
workers granted twice the limit; its history-list update (read, append, write back) also loses counts
when two processes write at once. Now: the default cache is the Redis every process shares whenever a
broker is configured, each request is one atomic increment, and the admin's login form refuses a user
name and address after ``ADMIN_LOGIN_MAX_FAILURES`` failures.

"Two processes" are two throttle instances, each with its own cache connection to one store: local
memory here (one store per interpreter), and a real ``redis-server`` on a Unix socket when one is
installed.
"""
from __future__ import annotations

import os
import runpy
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured
from rest_framework.test import APIRequestFactory

from verification.api.throttling import DeviceRateThrottle
from verification.models import Device

SETTINGS = Path(__file__).resolve().parents[2] / "accesscontrol" / "settings.py"
LOGIN_URL = "/admin/login/"


def load_settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> dict:
    """Evaluate accesscontrol/settings.py afresh with exactly ``env`` (plus PATH/HOME) in the environment."""
    monkeypatch.setattr(os, "environ", {"PATH": os.environ.get("PATH", ""), "HOME": "/tmp", **env})
    return runpy.run_path(str(SETTINGS))


PRODUCTION = {"SECRET_KEY": "x" * 60, "ALLOWED_HOSTS": "door.example.org", "DATABASE_URL": "sqlite:///:memory:"}


# --- settings -------------------------------------------------------------------------------------


def test_with_a_redis_broker_the_cache_is_that_redis_not_process_memory(monkeypatch):
    cache = load_settings(monkeypatch, **PRODUCTION, CELERY_BROKER_URL="redis://redis:6379/0")["CACHES"]["default"]
    assert cache["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    assert cache["LOCATION"] == "redis://redis:6379/0"


def test_cache_url_names_the_shared_cache(monkeypatch):
    cache = load_settings(
        monkeypatch, **PRODUCTION, CELERY_BROKER_URL="redis://redis:6379/0", CACHE_URL="rediss://:p%40ss@cache:6380/1"
    )["CACHES"]["default"]
    assert cache["LOCATION"] == "rediss://:p%40ss@cache:6380/1"


def test_local_memory_only_without_a_broker(monkeypatch):
    cache = load_settings(monkeypatch, **PRODUCTION)["CACHES"]["default"]
    assert cache["BACKEND"] == "django.core.cache.backends.locmem.LocMemCache"


@pytest.mark.parametrize(
    "env", [{"CELERY_BROKER_URL": "amqp://rabbit//"}, {"CACHE_URL": "memcached://cache:11211"}], ids=["amqp", "memcached"]
)
def test_a_broker_without_a_shared_cache_stops_start_up(monkeypatch, env):
    with pytest.raises(ImproperlyConfigured, match="CACHE_URL must be a redis://"):
        load_settings(monkeypatch, **PRODUCTION, **env)


def test_compose_gives_every_app_process_the_shared_cache():
    import yaml

    services = yaml.safe_load((SETTINGS.parents[1] / "docker-compose.yml").read_text())["services"]
    assert services["web"]["environment"]["CACHE_URL"].startswith("redis://redis:6379/")


# --- device throttle ------------------------------------------------------------------------------


@pytest.fixture(params=["locmem", "redis"])
def shared_store(request, tmp_path, settings):
    """CACHES settings for one store that several connections (processes) reach."""
    if request.param == "locmem":
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "t"}}
        caches["default"].clear()
        yield
        return
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed")
    socket = tmp_path / "redis.sock"
    process = subprocess.Popen(
        [server, "--port", "0", "--unixsocket", str(socket), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            if socket.exists():
                break
            time.sleep(0.05)
        settings.CACHES = {
            "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": f"unix://{socket}"}
        }
        yield
    finally:
        process.terminate()
        process.wait(timeout=10)


def _process_throttle(cache=None) -> DeviceRateThrottle:
    """A throttle as a separate process has it: its own cache connection."""
    throttle = DeviceRateThrottle()
    throttle.rate = "3/min"
    throttle.num_requests, throttle.duration = throttle.parse_rate(throttle.rate)
    throttle.cache = cache or caches.create_connection("default")
    return throttle


def _device_request(device: Device):
    request = APIRequestFactory().get("/api/v1/checkins/1/")
    request.auth = device
    return request


@pytest.fixture
def device(db) -> Device:
    return Device.objects.create(name="door 1", token_hash="1" * 64)


def test_two_processes_share_one_count_per_device(shared_store, device):
    first, second = _process_throttle(), _process_throttle()
    assert first.cache is not second.cache
    request = _device_request(device)

    assert first.allow_request(request, None)
    assert second.allow_request(request, None)
    assert first.allow_request(request, None)
    # The limit is 3 for the device, not 3 per process.
    assert not second.allow_request(request, None)
    assert 0 < second.wait() <= 60
    assert not first.allow_request(request, None)


def test_another_device_has_its_own_count(shared_store, device):
    other = Device.objects.create(name="door 2", token_hash="2" * 64)
    throttle = _process_throttle()
    for _ in range(3):
        assert throttle.allow_request(_device_request(device), None)
    assert not throttle.allow_request(_device_request(device), None)
    assert _process_throttle().allow_request(_device_request(other), None)


class _SlowReads:
    """A cache connection whose reads take a while, as a busy network round trip does."""

    def __init__(self, cache):
        self._cache = cache

    def get(self, *args, **kwargs):
        value = self._cache.get(*args, **kwargs)
        time.sleep(0.05)
        return value

    def __getattr__(self, name):
        return getattr(self._cache, name)


def test_simultaneous_requests_in_many_processes_admit_no_more_than_the_limit(shared_store, device):
    # DRF's history list is read, appended to and written back: requests that read at the same time all
    # see room and all pass. An atomic increment admits exactly the limit.
    throttles = [_process_throttle(_SlowReads(caches.create_connection("default"))) for _ in range(8)]
    request = _device_request(device)
    start = threading.Barrier(len(throttles))
    admitted = []

    def hit(throttle):
        start.wait()
        admitted.append(throttle.allow_request(request, None))

    threads = [threading.Thread(target=hit, args=(throttle,)) for throttle in throttles]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert admitted.count(True) == 3


def test_api_answers_429_with_retry_after_once_the_shared_limit_is_spent(device_client, monkeypatch):
    monkeypatch.setattr(DeviceRateThrottle, "THROTTLE_RATES", {"device": "2/min"})
    device_client.get("/api/v1/checkins/1/")
    device_client.get("/api/v1/checkins/1/")
    response = device_client.get("/api/v1/checkins/1/")
    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 60


def test_a_cache_that_is_down_admits_the_request_and_says_so(device, settings, caplog):
    # In compose the cache is the broker's Redis: a check-in sent while it is away must still be stored
    # (the sweep queues it later), not answered 500.
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:9/0"}
    }
    throttle = _process_throttle()
    assert all(throttle.allow_request(_device_request(device), None) for _ in range(5))
    assert "not counted, the cache is unreachable" in caplog.text


# --- admin login ----------------------------------------------------------------------------------


@pytest.fixture
def officer(django_user_model):
    return django_user_model.objects.create_user("officer", password="correct-horse-battery", is_staff=True)


def _login(client, password: str, *, username: str = "officer", address: str = "203.0.113.7", **extra):
    return client.post(
        LOGIN_URL, {"username": username, "password": password, "next": "/admin/"}, REMOTE_ADDR=address, **extra
    )


def _logged_in(client) -> bool:
    return "_auth_user_id" in client.session


def test_admin_login_is_refused_after_n_failures_even_with_the_right_password(client, officer, settings, caplog):
    settings.ADMIN_LOGIN_MAX_FAILURES = 3
    for _ in range(3):
        response = _login(client, "guess")
        assert response.status_code == 200
        assert b"Please enter the correct username and password" in response.content

    response = _login(client, "correct-horse-battery")

    assert response.status_code == 200
    assert b"Too many failed logins for this account from your address" in response.content
    assert not _logged_in(client)
    assert "3 failed logins for user 'officer'" in caplog.text


def test_refused_pair_does_not_reach_the_password_check(client, officer, settings, monkeypatch):
    settings.ADMIN_LOGIN_MAX_FAILURES = 1
    _login(client, "guess")
    checked = []
    monkeypatch.setattr("django.contrib.auth.forms.authenticate", lambda *a, **k: checked.append(k))
    _login(client, "another guess")
    assert checked == []


def test_login_throttle_is_per_user_name_and_address(client, officer, settings, django_user_model):
    settings.ADMIN_LOGIN_MAX_FAILURES = 2
    django_user_model.objects.create_user("auditor", password="another-long-passphrase", is_staff=True)
    _login(client, "guess")
    _login(client, "guess", username="OFFICER")  # user names compare without case

    _login(client, "another-long-passphrase", username="auditor")
    assert _logged_in(client), "another account from the same address is not refused"
    client.logout()
    _login(client, "correct-horse-battery", address="198.51.100.9")
    assert _logged_in(client), "the same account from another address is not refused"


def test_login_counts_are_shared_by_every_process(client, officer, settings):
    # Failures counted through one cache connection refuse the login in a process with another.
    from verification import login_throttle, ratelimits

    settings.ADMIN_LOGIN_MAX_FAILURES = 2
    other_process = caches.create_connection("default")
    key = login_throttle._key("officer", None)
    for _ in range(2):
        ratelimits.counter_hit(key=key, window=settings.ADMIN_LOGIN_WINDOW_SECONDS, cache=other_process)
    assert login_throttle.login_refused_for(username="officer", request=None) is not None


def test_success_clears_the_count_and_the_window_ends(client, officer, settings, monkeypatch):
    settings.ADMIN_LOGIN_MAX_FAILURES = 2
    settings.ADMIN_LOGIN_WINDOW_SECONDS = 60
    # The clock stands still at a window's start: slow logins must not straddle two fixed windows.
    start = (time.time() // 60 + 1) * 60
    monkeypatch.setattr("verification.ratelimits.time.time", lambda: start)
    _login(client, "guess")
    _login(client, "correct-horse-battery")
    assert _logged_in(client)
    client.logout()
    _login(client, "guess")
    _login(client, "guess")
    assert b"Too many failed logins" in _login(client, "correct-horse-battery").content

    later = start + 61
    monkeypatch.setattr("verification.ratelimits.time.time", lambda: later)
    _login(client, "correct-horse-battery")
    assert _logged_in(client)


def test_behind_a_proxy_the_configured_header_names_the_client(client, officer, settings):
    settings.ADMIN_LOGIN_MAX_FAILURES = 1
    settings.CLIENT_IP_HEADER = "HTTP_X_REAL_IP"
    _login(client, "guess", address="10.0.0.2", HTTP_X_REAL_IP="203.0.113.7")
    _login(client, "correct-horse-battery", address="10.0.0.2", HTTP_X_REAL_IP="198.51.100.9")
    assert _logged_in(client), "clients behind one proxy are told apart by the proxy's header"
