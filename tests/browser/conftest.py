"""Browser tests (issue 11, item 4): the admin's flows in Debian's headless Chromium, driven by Selenium.

The browser is ``/usr/bin/chromium`` with ``/usr/bin/chromedriver`` (``apt-get install chromium
chromium-driver``; ``bin/test`` installs them when missing). Nothing is downloaded at run time: the
driver's path is given, so Selenium Manager never runs. A missing browser fails every test here with
the fix; nothing is skipped.

The site is pytest-django's ``live_server`` (a thread of this process, static files served), on the
unit tests' in-memory SQLite, which the server thread shares with the test. Two threads on one SQLite
connection must not interleave their statements: the server answers one request at a time under
``SERVER_LOCK``, and a test that touches the database while the page may be polling (the face check,
the review queue's reload) holds the same lock (``server_paused``). The model is the fake of
``tests/conftest.py``; tasks run in-process (no broker), as in the unit tests.
"""
from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.handlers.wsgi import WSGIHandler
from django.test.testcases import _MediaFilesHandler

from tests.browser.helpers import PASSWORD
from verification import roles

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WINDOW = (1400, 1000)

SERVER_LOCK = threading.RLock()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def _chromium() -> Iterator[object]:
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        pytest.fail(
            f"browser tests need Debian's Chromium and its driver; missing: {', '.join(missing)}. "
            "bin/test installs them (apt-get install -y chromium chromium-driver).",
            pytrace=False,
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    downloads = Path(os.environ.get("TMPDIR", "/tmp")) / f"browser-downloads-{os.getpid()}"
    downloads.mkdir(parents=True, exist_ok=True)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--disable-extensions",
        "--no-first-run",
        "--password-store=basic",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
    ):
        options.add_argument(argument)
    options.add_experimental_option(
        "prefs",
        {"download.default_directory": str(downloads), "download.prompt_for_download": False,
         "credentials_enable_service": False, "profile.password_manager_enabled": False},
    )
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    driver.downloads = downloads  # where the CSV export lands
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(autouse=True)
def _one_request_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    original = WSGIHandler.__call__

    def call(self, environ, start_response):  # noqa: ANN001, ANN202 - WSGI
        def start_closing(status, headers, exc_info=None):  # noqa: ANN001, ANN202
            # Without a length Django's server sends "Connection: close" and ends the request's thread at
            # once: no kept-alive connection outlives the test (its thread would touch the database later).
            return start_response(status, [(k, v) for k, v in headers if k.lower() != "content-length"], exc_info)

        with SERVER_LOCK:
            response = original(self, environ, start_closing)
            if getattr(response, "streaming", False):
                # A streamed body (the CSV export) reads the database as it is sent: read it here.
                body = b"".join(response)
                response.close()
                return [body]
            return response

    monkeypatch.setattr(WSGIHandler, "__call__", call)


@pytest.fixture
def server_paused() -> Callable[[], contextlib.AbstractContextManager]:
    """``with server_paused():`` database work in the test while the page may be asking the server."""
    return lambda: SERVER_LOCK


@pytest.fixture
def site(live_server, transactional_db, settings, monkeypatch):  # noqa: ANN001, ANN201
    """The live site with the roles' groups (a transactional test's flush removes the migration's rows).

    Django's test server would serve ``MEDIA_URL`` from ``MEDIA_ROOT`` itself, to anyone; here, as in
    production, ``/media/`` goes to the app's view, which asks for the image's permission.
    """
    monkeypatch.setattr(_MediaFilesHandler, "_should_handle", lambda self, path: False)
    roles.groups_sync(group_model=Group, permission_model=Permission)
    # Personas are made per test: a cheap hash keeps that and each login quick (the hasher is not under test).
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return live_server


@pytest.fixture
def browser(_chromium, site):  # noqa: ANN001, ANN201
    """The session's Chromium, logged out, with no download left from an earlier test."""
    _chromium.delete_all_cookies()
    for leftover in _chromium.downloads.iterdir():
        leftover.unlink()
    yield _chromium
    if _chromium.current_url.startswith(site.url):
        _chromium.execute_script("window.localStorage.clear(); window.sessionStorage.clear();")  # sidebar, theme
    # Leave no page that asks the server by itself (the review queue reloads, the face check polls).
    _chromium.get("about:blank")
    _chromium.delete_all_cookies()


@pytest.fixture
def make_persona(site, django_user_model):  # noqa: ANN001, ANN201
    """``make_persona(roles.GUARD)``: a staff user in that role's group only (user name from the role)."""

    def make(role: roles.Role, username: str | None = None):  # noqa: ANN202
        username = username or role.name.lower().replace(" ", "-")
        user = django_user_model.objects.create_user(username, f"{username}@example.org", PASSWORD, is_staff=True)
        user.groups.add(Group.objects.get(name=role.name))
        return user

    return make
