"""A security officer filters and exports the audit log, and unlocks a lockout."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from tests.browser.helpers import click_and_wait_for_new_page, element, login, messages, open_page, wait_until
from tests.conftest import upload
from verification import roles, services
from verification.admin.audit_log import CSV_COLUMNS
from verification.models import AuditEntry, CheckIn, Lockout


def checkin(device, fake, score: float) -> CheckIn:  # noqa: ANN001
    fake.scores = [score]
    submitted = services.checkin_submit(device=device, person_external_id="B-1001", snapshot_file=upload())
    services.checkin_process(checkin_id=submitted.pk)
    submitted.refresh_from_db()
    return submitted


def filter_link(browser, title: str, choice: str):  # noqa: ANN001, ANN201
    """The link of one choice under one filter of the changelist's side bar."""
    group = element(browser, f"#changelist-filter details[data-filter-title='{title}']")
    return group.find_element(By.LINK_TEXT, choice)


def downloaded(folder: Path) -> Path | None:
    done = [path for path in folder.iterdir() if path.suffix == ".csv"]
    return done[0] if len(done) == 1 else None


def result_rows(browser) -> list:  # noqa: ANN001
    return browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")


def test_a_security_officer_filters_the_audit_log_by_device_and_decision_and_exports_those_rows(
    browser, site, make_persona, enrolled_person, device, other_device_and_token, fake_model
):
    back_door, _ = other_device_and_token
    admitted = checkin(device, fake_model, 0.9)
    refused = checkin(device, fake_model, 0.1)
    elsewhere = checkin(back_door, fake_model, 0.1)
    assert [c.decision for c in (admitted, refused, elsewhere)] == [1, 0, 0]
    make_persona(roles.SECURITY_OFFICER)
    login(browser, site, "security-officer")

    open_page(browser, site, "/admin/verification/auditentry/")
    total = len(result_rows(browser))
    assert total == AuditEntry.objects.count() > 3
    click_and_wait_for_new_page(browser, filter_link(browser, "device", "front-door"))
    click_and_wait_for_new_page(browser, filter_link(browser, "decision", "0 (refused)"))

    [row] = result_rows(browser)
    [expected] = AuditEntry.objects.filter(device_name="front-door", decision=0)
    assert expected.checkin_id == refused.pk
    assert row.find_element(By.CSS_SELECTOR, ".field-seq").text == str(expected.seq)
    assert "refused" in row.find_element(By.CSS_SELECTOR, ".field-decision_badge").text
    assert "device=front-door" in browser.current_url and "decision=0" in browser.current_url

    export = browser.find_element(By.CSS_SELECTOR, ".object-tools a[href*='export.csv']")
    assert export.text.lower() == "export csv (filtered)"
    assert "device=front-door" in export.get_attribute("href")
    export.click()
    path = wait_until(browser, lambda b: downloaded(b.downloads), "the CSV export was not downloaded")
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert [(r["seq"], r["device_name"], r["decision"], r["reason"]) for r in rows] == [
        (str(expected.seq), "front-door", "0", "no_match")
    ]


@pytest.fixture
def locked_out(device, enrolled_person, fake_model, settings) -> Lockout:  # noqa: ANN001
    """B-1001 refused twice at the door: locked out (LOCKOUT_PERSON_MAX_FAILURES=2); the door is refused."""
    settings.LOCKOUT_PERSON_MAX_FAILURES = 2
    checkin(device, fake_model, 0.1)
    checkin(device, fake_model, 0.1)
    lockout = Lockout.objects.get(scope=Lockout.Scope.PERSON, key="B-1001")
    assert checkin(device, fake_model, 0.95).reason == "locked_out"
    return lockout


def test_a_security_officer_unlocks_a_lockout_from_the_admin_and_the_audit_names_them(
    browser, site, make_persona, locked_out, device, fake_model
):
    make_persona(roles.SECURITY_OFFICER)
    login(browser, site, "security-officer")

    # The dashboard warns of the lockout and leads to it.
    warning = element(browser, "ul.messagelist li.warning")
    assert "Lockouts in force (1)" in warning.text and "B-1001" in warning.text
    click_and_wait_for_new_page(browser, warning.find_element(By.LINK_TEXT, "Review or unlock"))
    [row] = result_rows(browser)
    assert row.find_element(By.CSS_SELECTOR, ".field-active img").get_attribute("alt") == "True"

    row.find_element(By.CSS_SELECTOR, "input.action-select").click()
    Select(browser.find_element(By.NAME, "action")).select_by_value("unlock")
    click_and_wait_for_new_page(browser, browser.find_element(By.CSS_SELECTOR, "button[name=index]"))

    assert "Unlocked 1 lockout(s); each unlock is in the audit log." in messages(browser)
    [row] = result_rows(browser)
    assert row.find_element(By.CSS_SELECTOR, ".field-active img").get_attribute("alt") == "False"
    assert row.find_element(By.CSS_SELECTOR, ".field-unlocked_by").text == "security-officer"
    locked_out.refresh_from_db()
    assert locked_out.unlocked_by == "security-officer" and locked_out.unlocked_at is not None
    [unlock] = AuditEntry.objects.filter(kind=AuditEntry.Kind.UNLOCK)
    assert (unlock.actor, unlock.person_external_id, unlock.detail["lockout_id"]) == (
        "security-officer", "B-1001", locked_out.pk,
    )

    # The audit log shows the unlock and who did it; the door lets the person try again.
    open_page(browser, site, "/admin/verification/auditentry/?kind=unlock")
    [row] = result_rows(browser)
    assert "Unlock" in row.text and "by security-officer" in row.text
    assert checkin(device, fake_model, 0.95).decision == 1


def test_the_audit_list_fits_1400_px_with_the_navigation_open_no_sideways_scrolling(
    browser, site, make_persona, enrolled_person, device, fake_model
):
    checkin(device, fake_model, 0.9)
    checkin(device, fake_model, 0.1)
    make_persona(roles.SECURITY_OFFICER)
    login(browser, site, "security-officer")
    open_page(browser, site, "/admin/verification/auditentry/")
    assert element(browser, "#nav-sidebar").is_displayed()  # Django's default: the navigation open
    table, box, page, window = browser.execute_script(
        "const box = document.querySelector('#changelist .results');"
        "return [document.querySelector('#result_list').scrollWidth, box.clientWidth,"
        " document.documentElement.scrollWidth, window.innerWidth];"
    )
    assert window >= 1380  # the suite's 1400 px window
    assert table <= box, f"the audit table is {table} px wide in a {box} px box: the last columns scroll sideways"
    assert page <= window
