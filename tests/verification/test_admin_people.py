"""The person screens (issue 11, item 2): "valid now", lockout state and recent check-ins on the person's page,
the list's filters, a plain validity error, several photos at once (one bad file drops no other, each error
names its file), the face check's progress without a reload, rejected photos that stand out."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.conftest import staff_login as login
from tests.conftest import upload
from verification import roles, services
from verification.models import AuditEntry, CheckIn, Lockout, Person, ReferenceImage

pytestmark = pytest.mark.django_db

INLINE = "references"


# Every inline the person page may carry (reference photos; access groups, issue 11 item 1), empty.
INLINES = (INLINE, "access_memberships")


def person_data(**overrides) -> dict:
    data = {"name": "Grace Hopper", "external_id": "B-2002", "is_active": "on"}
    for prefix in INLINES:
        data |= {f"{prefix}-TOTAL_FORMS": "0", f"{prefix}-INITIAL_FORMS": "0",
                 f"{prefix}-MIN_NUM_FORMS": "0", f"{prefix}-MAX_NUM_FORMS": "1000"}
    data.update(overrides)
    return data


def change_url(person: Person) -> str:
    return reverse("admin:verification_person_change", args=[person.pk])


# --- Plain messages ---------------------------------------------------------------------------------


def test_validity_dates_in_the_wrong_order_are_a_field_error_in_words(staff_client):
    response = staff_client.post(reverse("admin:verification_person_add"), person_data(
        valid_from_0="2027-02-01", valid_from_1="00:00:00", valid_until_0="2027-01-01", valid_until_1="00:00:00",
    ))
    assert response.status_code == 200
    form = response.context["adminform"].form
    assert "must be later than" in " ".join(form.errors["valid_until"])
    content = response.content.decode()
    assert "Constraint" not in content and "person_validity_ordered" not in content
    assert not Person.objects.exists()


def test_the_same_plain_message_comes_from_the_service(db):
    from django.core.exceptions import ValidationError

    now = timezone.now()
    with pytest.raises(ValidationError) as refused:
        services.person_create(name="A", external_id="X-1", valid_from=now, valid_until=now - timedelta(days=1))
    assert list(refused.value.message_dict) == ["valid_until"]


# --- The person's page: valid now, lockout, recent check-ins ---------------------------------------


def test_person_page_says_whether_the_person_is_valid_now_and_why(staff_client, person):
    page = staff_client.get(change_url(person)).content.decode()
    assert "Valid now" in page and "Yes: active, no end date." in page
    Person.objects.filter(pk=person.pk).update(valid_until=timezone.now() - timedelta(hours=1))
    page = staff_client.get(change_url(person)).content.decode()
    assert "Not valid now" in page and "No: validity ended" in page
    Person.objects.filter(pk=person.pk).update(valid_until=None, is_active=False)
    assert "No: marked inactive." in staff_client.get(change_url(person)).content.decode()


def test_person_page_shows_a_lockout_in_force_and_until_when(staff_client, person):
    assert "Not locked out." in staff_client.get(change_url(person)).content.decode()
    until = timezone.now() + timedelta(minutes=10)
    lockout = Lockout.objects.create(scope=Lockout.Scope.PERSON, key=person.external_id, label=person.external_id,
                                     failures=5, level=2, locked_until=until)
    page = staff_client.get(change_url(person)).content.decode()
    local = timezone.localtime(until)
    assert f"until {local:%Y-%m-%d %H:%M:%S} {local.tzname()}" in page
    assert "level 2, 5 refusals" in page
    assert reverse("admin:verification_lockout_change", args=[lockout.pk]) in page


def test_person_page_lists_recent_checkins_for_those_who_may_see_checkins(
    staff_client, django_user_model, enrolled_person, device, fake_model
):
    fake_model.scores = [0.1]
    checkin = services.checkin_submit(device=device, person_external_id="B-1001", snapshot_file=upload())
    services.checkin_process(checkin_id=checkin.pk)
    page = staff_client.get(change_url(enrolled_person)).content.decode()
    assert "Recent check-ins" in page
    assert reverse("admin:verification_checkin_change", args=[checkin.pk]) in page
    assert "Face does not match" in page and "front-door" in page

    operator = login(django_user_model, "operator", group=roles.OPERATOR.name)  # no view_checkin
    page = operator.get(change_url(enrolled_person)).content.decode()
    assert "Recent check-ins" not in page
    assert reverse("admin:verification_checkin_change", args=[checkin.pk]) not in page


# --- List filters -----------------------------------------------------------------------------------


@pytest.fixture
def people(enrolled_person):
    """Ada (B-1001): valid, one ready photo. Bob: expired, no photo, locked out. Cy: inactive."""
    now = timezone.now()
    bob = services.person_create(name="Bob", external_id="B-2", valid_until=now - timedelta(days=1))
    cy = services.person_create(name="Cy", external_id="B-3", is_active=False)
    Lockout.objects.create(scope=Lockout.Scope.PERSON, key="B-2", label="B-2", failures=5,
                           locked_until=now + timedelta(minutes=5))
    Lockout.objects.create(scope=Lockout.Scope.PERSON, key="B-3", label="B-3", failures=5,
                           locked_until=now - timedelta(minutes=5))  # over
    return {"ada": enrolled_person, "bob": bob, "cy": cy}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"valid_now": "yes"}, {"B-1001"}),
        ({"valid_now": "no"}, {"B-2", "B-3"}),
        ({"photos": "ready"}, {"B-1001"}),
        ({"photos": "none_ready"}, {"B-2", "B-3"}),
        ({"lockout": "yes"}, {"B-2"}),
        ({"lockout": "no"}, {"B-1001", "B-3"}),
    ],
)
def test_people_list_filters(staff_client, people, query, expected):
    response = staff_client.get(reverse("admin:verification_person_changelist"), query)
    assert response.status_code == 200
    assert {person.external_id for person in response.context["cl"].result_list} == expected


def test_people_list_shows_valid_now_and_lockout_columns(staff_client, people):
    response = staff_client.get(reverse("admin:verification_person_changelist"))
    content = response.content.decode()
    assert "Valid now" in content and "Locked out until" in content
    rows = {person.external_id: person for person in response.context["cl"].result_list}
    assert rows["B-2"].lockout_until is not None and rows["B-3"].lockout_until is None


# --- Several photos at once -------------------------------------------------------------------------


def test_one_bad_file_does_not_drop_the_other_chosen_photos_and_each_error_names_its_file(
    staff_client, fake_model, django_capture_on_commit_callbacks
):
    photos = [upload(name="front.jpg"), upload(b"not an image", name="scan.pdf.jpg"), upload(name="side.jpg"),
              upload(b"", name="empty.png")]
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(reverse("admin:verification_person_add"), person_data(photos=photos))
    assert response.status_code == 302
    person = Person.objects.get(external_id="B-2002")
    assert response["Location"] == change_url(person)  # stays on the page where the face check shows
    assert person.references.count() == 2
    assert set(person.references.values_list("status", flat=True)) == {"ready"}
    shown = [str(message) for message in response.wsgi_request._messages]
    assert "“scan.pdf.jpg” was not added: The file is not a readable image." in shown
    assert "“empty.png” was not added: The image file is empty." in shown
    assert "“front.jpg” is enrolled (one face found and embedded)." in shown
    assert "“side.jpg” is enrolled (one face found and embedded)." in shown
    added = AuditEntry.objects.filter(kind=AuditEntry.Kind.REFERENCE_ADDED, person_external_id="B-2002")
    assert added.count() == 2 and {entry.actor for entry in added} == {"officer"}


def test_photos_can_be_added_on_the_change_page_too(staff_client, person, fake_model, django_capture_on_commit_callbacks):
    data = person_data(name=person.name, external_id=person.external_id, photos=[upload(name="a.jpg")])
    with django_capture_on_commit_callbacks(execute=True):
        assert staff_client.post(change_url(person), data).status_code == 302
    assert person.references.get().status == ReferenceImage.Status.READY


def test_a_user_who_may_not_see_reference_photos_gets_no_picker_and_cannot_post_photos(django_user_model, person):
    clerk = login(django_user_model, "clerk", codenames=("view_person", "change_person", "add_referenceimage"))
    page = clerk.get(change_url(person))
    assert page.status_code == 200
    assert 'name="photos"' not in page.content.decode()
    data = person_data(name=person.name, external_id=person.external_id, photos=[upload(name="a.jpg")])
    assert clerk.post(change_url(person), data).status_code == 403
    assert not ReferenceImage.objects.exists()


# --- The face check's progress, no reload -----------------------------------------------------------


@pytest.fixture
def queued(person, monkeypatch):
    """A person with one photo queued for the face check (a worker would embed it)."""
    monkeypatch.setattr("verification.services.queueing.enqueue", lambda name, object_id: True)
    return services.reference_add(person=person, image_file=upload())


def status_url(person: Person) -> str:
    return reverse("admin:verification_person_photo_status", args=[person.pk])


def test_person_page_follows_the_face_check_without_a_reload(staff_client, person, queued, fake_model):
    page = staff_client.get(change_url(person)).content.decode()
    assert "verification/admin/face_check.js" in page
    assert f'data-url="{status_url(person)}"' in page
    assert f'data-reference-id="{queued.pk}" data-status="pending"' in page

    pending = staff_client.get(status_url(person))
    assert pending.status_code == 200
    assert pending["Cache-Control"].startswith("max-age=0")
    assert pending.json() == {"pending": 1, "photos": [{
        "id": queued.pk, "status": "pending", "status_label": "Pending", "reason": "", "reason_label": "",
    }]}

    services.reference_embed(reference_id=queued.pk)  # the worker
    queued.refresh_from_db()
    ready = staff_client.get(status_url(person)).json()
    assert ready["pending"] == 0
    (photo,) = ready["photos"]
    assert photo["status"] == "ready"
    assert photo["face_url"] == reverse("media", kwargs={"path": queued.face_crop.name})


def test_a_rejected_photo_stands_out_with_its_reason(staff_client, person, queued, fake_model):
    fake_model.reject_reason = "multiple_faces"
    services.reference_embed(reference_id=queued.pk)
    page = staff_client.get(change_url(person)).content.decode()
    assert "face-check-rejected" in page and "More than one face" in page
    assert staff_client.get(status_url(person)).json()["photos"][0]["reason_label"] == "More than one face"


def test_face_check_progress_needs_the_right_to_see_the_person_and_faces_need_their_own(
    django_user_model, person, queued, fake_model
):
    services.reference_embed(reference_id=queued.pk)
    auditor = login(django_user_model, "auditor", group=roles.AUDITOR.name)
    assert auditor.get(status_url(person)).status_code == 403
    dpo = login(django_user_model, "dpo", group=roles.DATA_PROTECTION_OFFICER.name)  # people, no photos
    body = dpo.get(status_url(person)).json()
    assert body["photos"][0]["status"] == "ready" and "face_url" not in body["photos"][0]
    operator = login(django_user_model, "operator", group=roles.OPERATOR.name)
    assert "face_url" in operator.get(status_url(person)).json()["photos"][0]


def test_checkin_list_times_have_seconds_and_the_time_zone(staff_client, device, enrolled_person, fake_model):
    checkin = services.checkin_submit(device=device, person_external_id="B-1001", snapshot_file=upload())
    content = staff_client.get(reverse("admin:verification_checkin_changelist")).content.decode()
    local = timezone.localtime(CheckIn.objects.get(pk=checkin.pk).created_at)
    assert f"{local:%Y-%m-%d %H:%M:%S} {local.tzname()}" in content
    assert staff_client.get(reverse("admin:verification_checkin_changelist"), {"q": "front-door"}).context[
        "cl"].result_count == 1


def test_a_reference_photo_is_named_by_its_number_and_status_not_the_persons_database_id(enrolled_person):
    photo = enrolled_person.references.first()
    assert str(photo) == f"Photo #{photo.pk} ({photo.get_status_display().lower()})"
    assert f"of {enrolled_person.pk}" not in str(photo)


@pytest.mark.parametrize("object_id", ["\u00b3", "x", "1\u00b2"])
def test_face_check_progress_of_an_id_that_is_no_number_is_404_not_a_server_error(staff_client, person, object_id):
    url = status_url(person).replace(f"/{person.pk}/", f"/{object_id}/")
    response = staff_client.get(url)
    assert response.status_code == 404 and response.json() == {"error": "no such person"}
