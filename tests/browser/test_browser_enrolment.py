"""An operator enrols a person with several photos and watches the face check finish in the page."""
from __future__ import annotations

from pathlib import Path

import pytest
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
from verification import roles, services
from verification.models import AuditEntry, Person, ReferenceImage


@pytest.fixture
def held_queue(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Reference ids queued for the worker, held until the test plays the worker (photos stay pending)."""
    queued: list[int] = []

    def enqueue(task_name: str, object_id: int) -> bool:
        assert task_name == "reference_embed_task"
        queued.append(object_id)
        return True

    monkeypatch.setattr("verification.services.queueing.enqueue", enqueue)
    return queued


def photo_files(folder: Path) -> dict[str, Path]:
    files = {
        "front.jpg": image_bytes(comment=b"front"),
        "left.png": image_bytes("PNG", colour=(180, 140, 110)),
        "holiday.jpg": image_bytes(comment=b"holiday"),  # the worker finds no face in it
        "notes.jpg": b"this is a text file, not a photo",  # refused at upload
    }
    paths = {}
    for name, data in files.items():
        paths[name] = folder / name
        paths[name].write_bytes(data)
    return paths


def badges(browser) -> dict[str, tuple[str, str]]:  # noqa: ANN001
    """Reference id -> (status attribute, shown text) of each photo's face-check badge."""
    return {
        badge.get_attribute("data-reference-id"): (badge.get_attribute("data-status"), badge.text)
        for badge in browser.find_elements(By.CSS_SELECTOR, ".face-check[data-reference-id]")
    }


def test_an_operator_enrols_with_several_photos_and_sees_the_face_check_finish_without_reloading(
    browser, site, make_persona, fake_model, held_queue, server_paused, tmp_path
):
    make_persona(roles.OPERATOR)
    files = photo_files(tmp_path)
    login(browser, site, "operator")

    open_page(browser, site, "/admin/verification/person/add/")
    browser.find_element(By.ID, "id_name").send_keys("Grace Hopper")
    browser.find_element(By.ID, "id_external_id").send_keys("B-2001")
    browser.find_element(By.ID, "id_photos").send_keys("\n".join(str(path) for path in files.values()))
    click_and_wait_for_new_page(browser, browser.find_element(By.NAME, "_save"))

    # Back on the person's page (not the list): the bad file is named, the others were kept.
    person = Person.objects.get(external_id="B-2001")
    assert browser.current_url.endswith(f"/admin/verification/person/{person.pk}/change/")
    shown = messages(browser)
    assert any("“notes.jpg” was not added" in message for message in shown), shown
    assert any("3 photo(s) queued for the face check" in message for message in shown), shown
    assert not any(name in message for message in shown for name in ("front.jpg", "left.png", "holiday.jpg")
                   if "not added" in message)
    references = list(person.references.order_by("pk"))
    assert [reference.status for reference in references] == ["pending"] * 3
    assert set(held_queue) == {reference.pk for reference in references}
    ids = [str(reference.pk) for reference in references]
    assert badges(browser) == {id_: ("pending", "Pending") for id_ in ids}
    assert "3 photo(s) in the face check" in element(browser, "#face-check-progress").text

    # The worker runs while the page stays open; the page must follow it by itself.
    browser.execute_script("window.sameDocument = true;")
    with server_paused():
        services.reference_embed(reference_id=references[0].pk)
        services.reference_embed(reference_id=references[1].pk)
        fake_model.reject_reason = "no_face"
        services.reference_embed(reference_id=references[2].pk)

    finished = {ids[0]: ("ready", "Ready"), ids[1]: ("ready", "Ready"), ids[2]: ("rejected", "Rejected")}
    wait_until(browser, lambda b: badges(b) == finished, "the face check's result did not appear in the page")
    assert browser.execute_script("return window.sameDocument === true;"), "the page was reloaded"
    wait_until(browser, lambda b: b.find_element(By.ID, "face-check-progress").text == "")
    rows = {
        row.find_element(By.CSS_SELECTOR, ".face-check").get_attribute("data-reference-id"): row
        for row in browser.find_elements(By.CSS_SELECTOR, "tr:has(.face-check[data-reference-id])")
    }
    # Ready photos show their aligned face; the rejected one stands out and says why.
    for id_ in ids[:2]:
        face = rows[id_].find_element(By.CSS_SELECTOR, "td.field-face img")
        assert face.get_attribute("alt") == "aligned face"
        wait_until(browser, lambda b, face=face: image_shown(b, face), "an aligned face did not load")
    rejected = rows[ids[2]]
    assert "va-badge-bad" in rejected.find_element(By.CSS_SELECTOR, ".face-check").get_attribute("class")
    assert rejected.find_element(By.CSS_SELECTOR, "td.field-reason_text").text == "No face found"

    for reference in references:
        reference.refresh_from_db()
    assert [(r.status, r.reason) for r in references] == [("ready", ""), ("ready", ""), ("rejected", "no_face")]
    assert references[0].embedding is not None and references[0].face_crop
    added = AuditEntry.objects.filter(kind=AuditEntry.Kind.REFERENCE_ADDED, person_external_id="B-2001")
    assert added.count() == 3 and set(added.values_list("actor", flat=True)) == {"operator"}
    created = AuditEntry.objects.get(kind=AuditEntry.Kind.PERSON_CREATED, person_external_id="B-2001")
    assert created.actor == "operator"
    assert ReferenceImage.objects.count() == 3  # nothing stored for the refused file

    # The list agrees: two ready photos, one rejected, and enough to check in.
    open_page(browser, site, "/admin/verification/person/?q=B-2001")
    row = element(browser, "#result_list tbody tr")
    assert row.find_element(By.CSS_SELECTOR, "td.field-ready_refs").text == "2"
    assert row.find_element(By.CSS_SELECTOR, "td.field-rejected_refs").text == "1"
