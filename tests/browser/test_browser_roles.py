"""Each role sees only its own menu entries, is refused (403) the rest, and sees biometric images only with
the right to (verification/roles.py)."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.urls import reverse
from selenium.webdriver.common.by import By

from tests.browser.helpers import element, login, open_page, page_text
from tests.conftest import upload
from verification import roles, services
from verification.models import AuditEntry, CheckIn

# Pages by what they hold; "reference photo" and "snapshot" are the stored images themselves.
PAGES = {
    "people": "/admin/verification/person/",
    "devices": "/admin/verification/device/",
    "check-ins": "/admin/verification/checkin/",
    "audit log": "/admin/verification/auditentry/",
    "audit export": "/admin/verification/auditentry/export.csv",
    "lockouts": "/admin/verification/lockout/",
    "review queue": "/admin/verification/checkinreview/",
    "reference photo": None,
    "snapshot": None,
}


@dataclass(frozen=True)
class Sees:
    role: roles.Role
    menu: tuple[str, ...]
    pages: tuple[str, ...]  # the others answer 403


ACCESS_MENU = ("Access groups", "Doors", "Holidays", "Zones")
EXPECTED = [
    Sees(roles.OPERATOR, ("Devices", "People", *ACCESS_MENU), ("people", "devices", "reference photo")),
    Sees(roles.SECURITY_OFFICER, ("Audit entries", "Check-ins", "Lockouts", "Review queue", *ACCESS_MENU),
         ("check-ins", "audit log", "audit export", "lockouts", "review queue", "snapshot")),
    Sees(roles.GUARD, ("Check-ins", "Review queue"), ("check-ins", "review queue", "snapshot", "reference photo")),
    Sees(roles.AUDITOR, ("Audit entries",), ("audit log", "audit export")),
    Sees(roles.DATA_PROTECTION_OFFICER, ("People",), ("people",)),
]


@pytest.fixture
def decided(device, enrolled_person, fake_model) -> CheckIn:  # noqa: ANN001
    checkin = services.checkin_submit(device=device, person_external_id="B-1001", snapshot_file=upload())
    services.checkin_process(checkin_id=checkin.pk)
    checkin.refresh_from_db()
    assert checkin.decision == 1 and checkin.best_reference is not None
    return checkin


def status_of(browser, path: str) -> int:  # noqa: ANN001
    """The HTTP status the logged-in browser gets for ``path`` (fetch with the page's session)."""
    return browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0], {credentials: 'same-origin', redirect: 'manual', cache: 'no-store'})"
        ".then(r => done(r.status)).catch(e => done(String(e)));",
        path,
    )


def media_images(browser) -> list[str]:  # noqa: ANN001
    return [img.get_attribute("src") for img in browser.find_elements(By.CSS_SELECTOR, "img[src*='/media/']")]


@pytest.mark.parametrize("sees", EXPECTED, ids=[expected.role.name for expected in EXPECTED])
def test_each_role_sees_only_its_menu_and_is_refused_the_rest(browser, site, make_persona, decided, sees):
    pages = {
        **PAGES,
        "reference photo": reverse("media", kwargs={"path": decided.best_reference.image.name}),
        "snapshot": reverse("media", kwargs={"path": decided.snapshot.name}),
    }
    user = make_persona(sees.role)
    login(browser, site, user.username)
    browser.set_script_timeout(15)

    # The admin's own stylesheet was served (the live server serves static files): the header is coloured.
    header = browser.execute_script("return getComputedStyle(document.getElementById('header')).backgroundColor;")
    assert header not in ("", "rgba(0, 0, 0, 0)", "transparent")
    menu = [link.text for link in browser.find_elements(By.CSS_SELECTOR, "#content-main tr[class^=model-] th a")]
    assert sorted(menu) == sorted(sees.menu)
    answers = {name: status_of(browser, path) for name, path in pages.items()}
    assert answers == {name: 200 if name in sees.pages else 403 for name in pages}

    # What a refused page looks like to the person.
    refused = next(name for name in PAGES if name not in sees.pages)
    open_page(browser, site, pages[refused])
    assert "403 Forbidden" in page_text(browser)

    # Biometric images appear only for those who may see them: the person's page and the decision's entry.
    if "people" in sees.pages:
        open_page(browser, site, f"/admin/verification/person/{decided.person_id}/change/")
        element(browser, "#content-main")
        shown = media_images(browser)
        assert bool(shown) == ("reference photo" in sees.pages), shown
    if "audit log" in sees.pages:
        entry = AuditEntry.objects.get(checkin_id=decided.pk, kind=AuditEntry.Kind.DECISION)
        open_page(browser, site, f"/admin/verification/auditentry/{entry.pk}/change/")
        assert "Score of each reference" in element(browser, "#content-main").text
        shown = media_images(browser)
        assert any(decided.snapshot.name in src for src in shown) == ("snapshot" in sees.pages), shown
        assert not any(decided.best_reference.image.name in src for src in shown)
