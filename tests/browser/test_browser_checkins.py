"""A door checks in through the API; staff see it in the admin; a guard answers the review queue."""
from __future__ import annotations

import pytest
import requests
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By

from tests.browser.helpers import (
    click_and_wait_for_new_page,
    element,
    image_shown,
    login,
    messages,
    open_page,
    wait_until,
)
from tests.conftest import image_bytes
from verification import roles
from verification.models import AuditEntry, CheckIn

API = "/api/v1/checkins/"
ADMIT, REVIEW = 0.875, 0.625  # the fake model's admit threshold and review edge (as tests/verification/test_reviews.py)


def door_checks_in(site, token: str, person: str, *, frame: bytes) -> dict:  # noqa: ANN001
    response = requests.post(
        site.url + API,
        headers={"Authorization": f"Token {token}"},
        data={"person": person, "wait": "0"},
        files={"snapshot": ("door.jpg", frame, "image/jpeg")},
        timeout=30,
    )
    assert response.status_code in (200, 202), response.text
    return response.json()


def door_polls(site, token: str, checkin_id: int) -> dict:  # noqa: ANN001
    response = requests.get(f"{site.url}{API}{checkin_id}/", headers={"Authorization": f"Token {token}"}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def column(row, name: str) -> str:  # noqa: ANN001
    return row.find_element(By.CSS_SELECTOR, f".field-{name}").text  # td, or th for the link column


def test_a_door_checks_in_through_the_api_and_staff_see_the_checkin_and_its_audit_entry(
    browser, site, make_persona, enrolled_person, device_and_token
):
    device, token = device_and_token
    answer = door_checks_in(site, token, "B-1001", frame=image_bytes(comment=b"door frame 1"))
    checkin = CheckIn.objects.get(pk=answer["id"])
    assert (checkin.status, checkin.decision, checkin.device_id) == ("decided", 1, device.pk)
    assert door_polls(site, token, checkin.pk)["decision"] == 1
    make_persona(roles.SECURITY_OFFICER)
    login(browser, site, "security-officer")

    open_page(browser, site, "/admin/verification/checkin/")
    row = element(browser, f"#result_list tbody tr:has(a[href$='/checkin/{checkin.pk}/change/'])")
    assert column(row, "device") == "front-door"
    assert column(row, "claimed_external_id") == "B-1001"
    assert column(row, "score_display") == "0.9000"

    open_page(browser, site, "/admin/verification/auditentry/?kind=decision")
    [entry] = AuditEntry.objects.filter(kind=AuditEntry.Kind.DECISION, checkin_id=checkin.pk)
    row = element(browser, "#result_list tbody tr")
    assert column(row, "seq") == str(entry.seq)
    assert column(row, "device_name") == "front-door"
    assert "B-1001" in column(row, "person")
    assert "admitted" in column(row, "decision_badge")
    assert entry.actor == "device:front-door" and entry.decision == 1

    # The entry's page: readable detail and the score of each reference.
    click_and_wait_for_new_page(browser, row.find_element(By.CSS_SELECTOR, ".field-seq a"))
    page = element(browser, "#content-main").text
    assert "Score of each reference" in page and "0.900" in page


@pytest.fixture
def band_model(fake_model):  # noqa: ANN001, ANN201
    fake_model.threshold = ADMIT
    fake_model.review_thresholds = ((1, REVIEW),)
    fake_model.scores = [0.75]  # in the band: a guard decides
    return fake_model


def admit(browser, checkin_id: int) -> list[str]:  # noqa: ANN001
    """Click Admit on the check-in's card; the message that says it was admitted, or none yet.

    The queue reloads itself every few seconds: a card gone stale under the click is looked up again (Chrome
    may report it as a node that no longer belongs to the document), and a reload that won the race against
    the click (no message) is answered with another click.
    """
    done = f"Check-in #{checkin_id} (B-1001) admitted"
    try:
        card = browser.find_element(By.ID, f"review-{checkin_id}")
        click_and_wait_for_new_page(browser, card.find_element(By.CSS_SELECTOR, "button[value=admit]"))
    except (StaleElementReferenceException, NoSuchElementException):
        pass
    except WebDriverException as error:  # Chrome's own word for a stale node, met once under load
        if "does not belong to the document" not in str(error):
            raise
    return [message for message in messages(browser) if done in message]


def test_a_guard_admits_from_the_review_queue_and_the_door_is_told_at_its_next_poll(
    browser, site, make_persona, enrolled_person, device_and_token, band_model, server_paused
):
    _, token = device_and_token
    answer = door_checks_in(site, token, "B-1001", frame=image_bytes(comment=b"door frame 2"))
    assert (answer["status"], answer["decision"]) == ("review", None)
    assert door_polls(site, token, answer["id"])["status"] == "review"  # "please wait"
    checkin_reference = enrolled_person.references.get().pk
    make_persona(roles.GUARD, "gate-guard")
    login(browser, site, "gate-guard")

    # The dashboard's "Reviews waiting" figure leads the guard to the queue.
    reviews_waiting = (
        "//div[contains(@class, 'dashboard-figure')][.//div[@class='dashboard-label' and .='Reviews waiting']]"
    )
    figure = wait_until(browser, lambda b: b.find_element(By.XPATH, reviews_waiting))
    waiting = figure.find_element(By.CSS_SELECTOR, ".dashboard-value a")
    assert waiting.text == "1"
    click_and_wait_for_new_page(browser, waiting)
    assert "/admin/verification/checkinreview/" in browser.current_url
    card = element(browser, f"#review-{answer['id']}")
    assert "Ada Lovelace" in card.text and "front-door" in card.text
    assert "0.750" in card.text and "0.875" in card.text and "0.625" in card.text
    images = card.find_elements(By.CSS_SELECTOR, "img[alt=snapshot], img[alt^=reference]")
    assert [image.get_attribute("alt") for image in images][:2] == ["snapshot", f"reference {checkin_reference}"]
    wait_until(browser, lambda b: all(image_shown(b, image) for image in images), "an image did not load")

    [said] = wait_until(browser, lambda b: admit(b, answer["id"]), "Admit did not admit")
    assert "the door gets the decision at its next poll" in said
    assert not browser.find_elements(By.ID, f"review-{answer['id']}")

    assert (door_polls(site, token, answer["id"])["status"], door_polls(site, token, answer["id"])["decision"]) == (
        "decided", 1,
    )
    with server_paused():  # the queue page reloads itself meanwhile
        checkin = CheckIn.objects.get(pk=answer["id"])
        assert (checkin.decision, checkin.reviewed_by, checkin.reason) == (1, "gate-guard", "")
        [opened] = AuditEntry.objects.filter(checkin_id=checkin.pk, kind=AuditEntry.Kind.REVIEW)
        [decided] = AuditEntry.objects.filter(checkin_id=checkin.pk, kind=AuditEntry.Kind.DECISION)
    assert opened.actor == "device:front-door" and opened.score == pytest.approx(0.75)
    assert (decided.actor, decided.decision) == ("gate-guard", 1)
