"""The admin through Django's test client: enrolment with inline upload, devices, the audit log."""
from __future__ import annotations

import csv
from datetime import timedelta
import io

import pytest
from django.urls import reverse

from tests.conftest import upload
from verification import selectors, services
from verification.models import AuditEntry, CheckIn, Device, Person, ReferenceImage

pytestmark = pytest.mark.django_db

INLINE = "references"


def person_form(**overrides):
    data = {
        "name": "Grace Hopper",
        "external_id": "B-2002",
        "is_active": "on",
        f"{INLINE}-TOTAL_FORMS": "1",
        f"{INLINE}-INITIAL_FORMS": "0",
        f"{INLINE}-MIN_NUM_FORMS": "0",
        f"{INLINE}-MAX_NUM_FORMS": "1000",
        f"{INLINE}-0-image": upload(name="grace.jpg"),
    }
    data.update(overrides)
    return data


def reference_change_form(person, reference, **inline_fields):
    """The person's change form with its one existing reference in the inline, plus ``inline_fields``."""
    data = person_form(
        name=person.name,
        external_id=person.external_id,
        **{f"{INLINE}-INITIAL_FORMS": "1", f"{INLINE}-0-id": str(reference.pk), f"{INLINE}-0-person": str(person.pk)},
    )
    del data[f"{INLINE}-0-image"]
    data.update({f"{INLINE}-0-{name}": value for name, value in inline_fields.items()})
    return data


def test_admin_requires_staff_login(client):
    response = client.get(reverse("admin:verification_person_changelist"))
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_enrolment_with_inline_upload_embeds_the_reference(staff_client, fake_model, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(reverse("admin:verification_person_add"), person_form())
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else response
    person = Person.objects.get(external_id="B-2002")
    reference = ReferenceImage.objects.get(person=person)
    assert reference.status == ReferenceImage.Status.READY
    assert reference.embedding_dim == 8
    page = staff_client.get(reverse("admin:verification_person_change", args=[person.pk]))
    content = page.content.decode()
    assert reverse("media", kwargs={"path": reference.image.name}) in content
    assert reverse("media", kwargs={"path": reference.face_crop.name}) in content
    assert "Ready" in content


def test_inline_upload_of_a_photo_without_a_face_shows_rejected_with_reason(
    staff_client, fake_model, django_capture_on_commit_callbacks
):
    fake_model.reject_reason = "no_face"
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(reverse("admin:verification_person_add"), person_form())
    shown = [str(message) for message in response.wsgi_request._messages]
    assert "“grace.jpg” was rejected: No face found." in shown
    person = Person.objects.get(external_id="B-2002")
    reference = ReferenceImage.objects.get(person=person)
    assert (reference.status, reference.reason) == ("rejected", "no_face")
    page = staff_client.get(reverse("admin:verification_person_change", args=[person.pk])).content.decode()
    assert "No face found" in page


def test_inline_upload_of_a_non_image_is_a_form_error_and_saves_nothing(staff_client):
    data = person_form(**{f"{INLINE}-0-image": upload(b"this is text", name="fake.jpg")})
    response = staff_client.post(reverse("admin:verification_person_add"), data)
    assert response.status_code == 200
    assert "not a readable image" in response.content.decode()
    assert not Person.objects.exists()
    assert not ReferenceImage.objects.exists()


def test_inline_upload_over_the_pixel_limit_is_a_form_error(staff_client, settings):
    settings.IMAGE_MAX_PIXELS = 100
    response = staff_client.post(reverse("admin:verification_person_add"), person_form())
    assert response.status_code == 200
    assert "the limit is 100 pixels" in response.content.decode()
    assert not ReferenceImage.objects.exists()


def test_inline_upload_with_a_worker_says_the_photo_is_queued(staff_client, monkeypatch, django_capture_on_commit_callbacks):
    monkeypatch.setattr("verification.services.queueing.enqueue", lambda name, object_id: True)
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(reverse("admin:verification_person_add"), person_form())
    shown = [str(message) for message in response.wsgi_request._messages]
    assert any("1 photo(s) queued for the face check" in message for message in shown)
    assert ReferenceImage.objects.get().status == ReferenceImage.Status.PENDING


def test_device_added_in_admin_shows_its_token_once(staff_client):
    response = staff_client.post(reverse("admin:verification_device_add"), {"name": "garage"}, follow=True)
    assert response.status_code == 200
    messages = [str(message) for message in response.context["messages"]]
    device = Device.objects.get(name="garage")
    token = next(m for m in messages if "shown only now" in m).split("<code>")[1].split("</code>")[0]
    assert selectors.device_by_token(raw_token=token) == device
    again = staff_client.get(reverse("admin:verification_device_change", args=[device.pk])).content.decode()
    assert token not in again


def test_device_revoke_action_blocks_the_token(staff_client, device_and_token):
    device, token = device_and_token
    staff_client.post(
        reverse("admin:verification_device_changelist"),
        {"action": "revoke_tokens", "_selected_action": [device.pk]},
    )
    device.refresh_from_db()
    assert device.revoked_at is not None
    assert selectors.device_by_token(raw_token=token) is None


@pytest.fixture
def audit_rows(device, other_device_and_token, enrolled_person, fake_model):
    other = other_device_and_token[0]
    rows = []
    for dev, external_id, score in [(device, "B-1001", 0.9), (device, "B-1001", 0.1), (other, "NOBODY", 0.9)]:
        fake_model.scores = [score]
        checkin = services.checkin_submit(device=dev, person_external_id=external_id, snapshot_file=upload())
        services.checkin_process(checkin_id=checkin.pk)
        rows.append(checkin)
    return rows


def changelist(staff_client, query=""):
    return staff_client.get(reverse("admin:verification_auditentry_changelist") + query)


def test_audit_list_shows_coloured_decisions(staff_client, audit_rows):
    content = changelist(staff_client).content.decode()
    assert "1 admitted" in content and "0 refused" in content
    assert "#1b7f3b" in content and "#b3261e" in content


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("?decision=1", 1),
        ("?decision=0", 2),
        ("?device=back-door&kind__exact=decision", 1),
        ("?person=B-1001&kind__exact=decision", 2),
        ("?reason=unknown_person", 1),
        ("?q=Lovelace&kind__exact=decision", 2),
        ("?kind__exact=decision", 3),
    ],
)
def test_audit_list_filters_and_search(staff_client, audit_rows, query, expected):
    response = changelist(staff_client, query)
    assert response.status_code == 200
    assert response.context["cl"].result_count == expected


def test_audit_list_filters_by_date(staff_client, audit_rows):
    from django.utils import timezone

    today = timezone.now().date()
    tomorrow = today + timedelta(days=1)
    query = f"?created_at__gte={today}+00:00:00%2B00:00&created_at__lt={tomorrow}+00:00:00%2B00:00"
    assert changelist(staff_client, query).context["cl"].result_count == AuditEntry.objects.count()
    future = "?created_at__gte=2099-01-01+00:00:00%2B00:00"
    assert changelist(staff_client, future).context["cl"].result_count == 0


def test_audit_csv_export_contains_the_filtered_rows(staff_client, audit_rows):
    response = staff_client.get(reverse("admin:verification_auditentry_export") + "?decision=0")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv"
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == 2
    assert {row["reason"] for row in rows} == {"no_match", "unknown_person"}


def test_audit_detail_shows_snapshot_next_to_best_reference(staff_client, audit_rows):
    entry = AuditEntry.objects.get(checkin=audit_rows[0])
    content = staff_client.get(reverse("admin:verification_auditentry_change", args=[entry.pk])).content.decode()
    checkin = CheckIn.objects.get(pk=audit_rows[0].pk)
    assert reverse("media", kwargs={"path": checkin.snapshot.name}) in content
    assert reverse("media", kwargs={"path": checkin.best_reference.image.name}) in content


def test_audit_log_refuses_add_change_and_delete_even_for_superusers(staff_client, audit_rows):
    entry = AuditEntry.objects.order_by("seq").first()
    before = (AuditEntry.objects.count(), entry.entry_hash, entry.decision)
    assert staff_client.get(reverse("admin:verification_auditentry_add")).status_code == 403
    assert staff_client.post(reverse("admin:verification_auditentry_add"), {"kind": "decision"}).status_code == 403
    change_url = reverse("admin:verification_auditentry_change", args=[entry.pk])
    staff_client.post(change_url, {"decision": "0", "reason": "edited"})
    assert staff_client.get(reverse("admin:verification_auditentry_delete", args=[entry.pk])).status_code == 403
    assert staff_client.post(reverse("admin:verification_auditentry_delete", args=[entry.pk]), {"post": "yes"}).status_code == 403
    bulk = staff_client.post(
        reverse("admin:verification_auditentry_changelist"),
        {"action": "delete_selected", "_selected_action": [entry.pk], "post": "yes"},
    )
    assert bulk.status_code in (200, 302)
    entry.refresh_from_db()
    assert (AuditEntry.objects.count(), entry.entry_hash, entry.decision) == before
    page = staff_client.get(change_url).content.decode()
    assert 'name="_save"' not in page


def test_media_is_served_to_staff_only(client, staff_client, audit_rows):
    checkin = CheckIn.objects.get(pk=audit_rows[0].pk)
    url = reverse("media", kwargs={"path": checkin.snapshot.name})
    anonymous = client.__class__().get(url)
    assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]
    response = staff_client.get(url)
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == checkin.snapshot.open("rb").read()


def test_media_view_refuses_paths_outside_media_root(staff_client):
    assert staff_client.get("/media/../manage.py").status_code == 404
    assert staff_client.get("/media/%2e%2e/%2e%2e/etc/passwd").status_code == 404


def test_existing_reference_photo_cannot_be_replaced_in_place(staff_client, enrolled_person):
    reference = enrolled_person.references.get()
    url = reverse("admin:verification_person_change", args=[enrolled_person.pk])
    data = reference_change_form(enrolled_person, reference, image=upload(name="other.jpg"))
    response = staff_client.post(url, data)
    assert response.status_code == 302
    before = reference.image.name
    reference.refresh_from_db()
    assert reference.image.name == before
    assert reference.status == ReferenceImage.Status.READY


def test_deleting_a_reference_in_the_inline_removes_its_files(staff_client, enrolled_person):
    reference = enrolled_person.references.get()
    storage, names = reference.image.storage, [reference.image.name, reference.face_crop.name]
    url = reverse("admin:verification_person_change", args=[enrolled_person.pk])
    data = reference_change_form(enrolled_person, reference, DELETE="on")
    assert staff_client.post(url, data).status_code == 302
    assert not ReferenceImage.objects.filter(pk=reference.pk).exists()
    assert not any(storage.exists(name) for name in names)


def test_deleting_a_person_in_the_admin_removes_their_photos_but_not_the_audit(staff_client, audit_rows, enrolled_person):
    reference = enrolled_person.references.get()
    storage, names = reference.image.storage, [reference.image.name, reference.face_crop.name]
    audit_before = AuditEntry.objects.count()
    url = reverse("admin:verification_person_delete", args=[enrolled_person.pk])
    assert staff_client.post(url, {"post": "yes"}).status_code == 302
    assert not Person.objects.filter(pk=enrolled_person.pk).exists()
    assert not ReferenceImage.objects.exists()
    assert not any(storage.exists(name) for name in names)
    assert AuditEntry.objects.count() == audit_before + 1  # the deletion itself, nothing removed
    assert AuditEntry.objects.order_by("-seq").first().kind == "person_deleted"
    assert CheckIn.objects.filter(claimed_external_id="B-1001", person__isnull=True).count() == 2
