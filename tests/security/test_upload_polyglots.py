"""Stored XSS through an upload: a file that is both a valid image and an HTML page.

Threat: a device holder (or a careless operator) uploads an image/HTML polyglot under a name such
as ``x.html``. If the stored name kept the client's suffix, the staff-only media view served it as
``text/html`` on the admin's origin and its script ran with a security officer's session. Stored
names now take their suffix from the decoded format, and the media view serves only image suffixes,
with the image type, ``nosniff`` and a sandboxing Content-Security-Policy.
"""
from __future__ import annotations

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse

from tests.conftest import image_bytes, upload
from verification import services
from verification.models import CheckIn, Person, ReferenceImage

pytestmark = pytest.mark.django_db

URL = "/api/v1/checkins/"
HTML = b"<html><body><script>fetch('/admin/').then(r => r.text()).then(alert)</script></body></html>"
HOSTILE_NAMES = ["x.html", "x.svg", "x.jpg.html", "x.HTM", "x"]
FORMATS = [("JPEG", ".jpg", "image/jpeg"), ("PNG", ".png", "image/png"), ("WEBP", ".webp", "image/webp")]


def polyglot(fmt: str = "JPEG") -> bytes:
    """A real image that decodes fine, with an HTML page appended (browsers sniff it as HTML)."""
    return image_bytes(fmt) + HTML


def submit(device_client, *, data: bytes, name: str):
    response = device_client.post(
        URL, {"snapshot": upload(data, name=name, content_type="text/html"), "person": "B-1001"}, format="multipart"
    )
    assert response.status_code in (200, 202), response.content
    return CheckIn.objects.get(pk=response.json()["id"])


def assert_served_as_image(response, content_type: str) -> None:
    assert response.status_code == 200
    assert response["Content-Type"] == content_type
    assert response["X-Content-Type-Options"] == "nosniff"
    policy = response["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "sandbox" in policy


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_snapshot_polyglot_is_stored_under_the_decoded_suffix_not_the_clients(device_client, monkeypatch, name):
    monkeypatch.setattr("verification.services.queueing.enqueue", lambda task, object_id: True)
    checkin = submit(device_client, data=polyglot(), name=name)
    assert checkin.snapshot.name.startswith("snapshots/")
    assert checkin.snapshot.name.endswith(".jpg")
    assert name.lower().rsplit(".", 1)[-1] not in checkin.snapshot.name.removesuffix(".jpg")


@pytest.mark.parametrize(("fmt", "suffix", "content_type"), FORMATS)
def test_snapshot_is_served_with_its_decoded_image_type_nosniff_and_a_sandbox_policy(
    device_client, staff_client, monkeypatch, fmt, suffix, content_type
):
    monkeypatch.setattr("verification.services.queueing.enqueue", lambda task, object_id: True)
    checkin = submit(device_client, data=polyglot(fmt), name="x.html")
    assert checkin.snapshot.name.endswith(suffix)
    response = staff_client.get(reverse("media", kwargs={"path": checkin.snapshot.name}))
    assert_served_as_image(response, content_type)
    assert b"".join(response.streaming_content) == polyglot(fmt)


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_reference_polyglot_uploaded_in_the_admin_is_stored_and_served_as_jpeg(
    staff_client, fake_model, django_capture_on_commit_callbacks, name
):
    from tests.verification.test_admin import person_form

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            reverse("admin:verification_person_add"),
            person_form(**{"references-0-image": upload(polyglot(), name=name, content_type="text/html")}),
        )
    assert response.status_code == 302
    reference = ReferenceImage.objects.get(person=Person.objects.get(external_id="B-2002"))
    assert reference.image.name.startswith("references/") and reference.image.name.endswith(".jpg")
    assert_served_as_image(staff_client.get(reverse("media", kwargs={"path": reference.image.name})), "image/jpeg")


def test_reference_added_through_the_service_takes_the_decoded_suffix(person):
    reference = services.reference_add(person=person, image_file=upload(image_bytes("PNG") + HTML, name="photo.jpg.html"))
    assert reference.image.name.endswith(".png")


@pytest.mark.parametrize("stored", ["snapshots/0123abcd.html", "snapshots/0123abcd.svg", "references/0123abcd.jpg.html",
                                    "snapshots/0123abcd", "snapshots/0123abcd.bin", "snapshots/0123abcd.xml"])
def test_a_stored_file_with_a_non_image_suffix_is_never_served(staff_client, stored):
    # A file written before this fix (or by anything else): refused, whatever its content.
    name = default_storage.save(stored, ContentFile(polyglot()))
    response = staff_client.get(reverse("media", kwargs={"path": name}))
    assert response.status_code == 404
    assert b"<script>" not in response.content  # the stored page is not in the 404 either


def test_the_served_type_comes_from_the_suffix_whitelist_not_from_guessing(staff_client):
    # An upper-case or odd-but-valid spelling still gets exactly the image type, never a guess.
    name = default_storage.save("snapshots/0123abcd.JPG", ContentFile(polyglot()))
    assert_served_as_image(staff_client.get(reverse("media", kwargs={"path": name})), "image/jpeg")
