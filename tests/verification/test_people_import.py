"""Bulk import of people from CSV and a zip of photos (issue 11, item 2): the dry run writes nothing and
reports every problem by line and file; the real run writes nothing unless every row is valid, then creates
the people (audited, with the operator and the file's line) and queues their photos for the face check."""
from __future__ import annotations

import io
import zipfile
from datetime import datetime, time, timedelta

import pytest
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from tests.conftest import image_bytes
from verification import roles
from verification.models import AuditEntry, Person, ReferenceImage
from verification.services.people_import import EXAMPLE_CSV, people_import

pytestmark = pytest.mark.django_db


def csv_file(text: str, name: str = "people.csv") -> io.BytesIO:
    data = io.BytesIO(text.encode("utf-8"))
    data.name = name
    return data


def zip_of(files: dict[str, bytes]) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    buffer.seek(0)
    return buffer


def jpeg(number: int) -> bytes:
    return image_bytes(comment=f"photo {number}".encode())


GOOD_CSV = (
    "external_id,name,is_active,valid_from,valid_until,photos\n"
    "B-1,Ada Lovelace,yes,2027-01-01,2027-12-31,ada-1.jpg;ada-2.jpg\n"
    "B-2,Grace Hopper,,,,\n"
    "B-3,Alan Turing,no,,,\n"
)


def good_zip() -> io.BytesIO:
    return zip_of({"ada-1.jpg": jpeg(1), "ada-2.jpg": jpeg(2), "B-2/front.jpg": jpeg(3), "B-3.png": image_bytes("PNG")})


def counts() -> tuple[int, int, int]:
    return Person.objects.count(), ReferenceImage.objects.count(), AuditEntry.objects.count()


def media_files(root) -> list:
    return [path for path in root.rglob("*") if path.is_file()] if root.exists() else []


def test_dry_run_validates_every_row_and_photo_and_writes_nothing(_media_root):
    before = counts()
    report = people_import(csv_file=csv_file(GOOD_CSV), photos_zip=good_zip(), dry_run=True, operator="op")
    assert report.ok and report.dry_run and not report.written
    assert [(row.line, row.external_id, row.action, row.photos) for row in report.rows] == [
        (2, "B-1", "create", ["ada-1.jpg", "ada-2.jpg"]),
        (3, "B-2", "create", ["B-2/front.jpg"]),  # found by the folder named after the external ID
        (4, "B-3", "create", ["B-3.png"]),  # found by its file name
    ]
    assert report.summary() == "Dry run, nothing written. 3 row(s): 3 to create, 0 to update, 4 photo(s); no problems found."
    assert counts() == before
    assert media_files(_media_root) == []


def test_dry_run_reports_each_problem_by_line_and_file(_media_root, person):
    text = (
        "External ID;Name;is_active;valid_from;valid_until;photos;email\n"
        "B-1;Ada;maybe;;;ada.jpg\n"  # bad boolean
        "B-1;Ada again;;;;\n"  # duplicate in the file
        ";Nobody;;;;\n"  # no external ID
        "B-1001;Ada Lovelace;;;;\n"  # already enrolled (the ``person`` fixture)
        "B-5;Eve;;2027-02-01;2027-01-01;\n"  # dates in the wrong order
        "B-6;Frank;;31/01/2027;;\n"  # not a date
        "B-7;Gus;;;;missing.jpg;x@example.org\n"  # photo not in the zip
        "B-8;Hal;;;;broken.jpg\n"  # not an image
    )
    archive = zip_of({"ada.jpg": jpeg(1), "broken.jpg": b"not a jpeg", "stray.jpg": jpeg(9)})
    before = counts()
    report = people_import(csv_file=csv_file(text), photos_zip=archive, dry_run=True)
    assert not report.ok
    problems = {row.line: row.errors for row in report.rows}
    assert problems[2] == ["is_active: “maybe” is not yes or no."]
    assert problems[3] == ["external_id B-1 is also on line 2."]
    assert any("external_id" in error and "blank" in error for error in problems[4])
    assert problems[5] == ["B-1001 is already enrolled (Ada Lovelace); tick “update existing people” to change them."]
    assert problems[6] == ["valid_until: “Valid until” must be later than “valid from”: the person may enter from the "
                           "first time up to, but not including, the second."]
    assert problems[7] == ["valid_from: “31/01/2027” is not a date (2027-01-31) or a time (2027-01-31 08:00)."]
    assert problems[8] == ["photo “missing.jpg”: not in the zip."]
    assert problems[9] == ["photo “broken.jpg”: The file is not a readable image."]
    assert report.rows_with_errors == 8
    assert "Column(s) ignored: email." in report.notes
    assert "1 file(s) in the zip belong to no row: stray.jpg." in report.notes
    assert counts() == before


def test_real_run_with_any_invalid_row_writes_nothing(_media_root):
    text = GOOD_CSV + "B-9,,,,,\n"  # no name
    before = counts()
    report = people_import(csv_file=csv_file(text), photos_zip=good_zip(), dry_run=False, operator="op")
    assert not report.ok and not report.written
    assert report.summary().endswith("1 row(s) with problems, so nothing was imported.")
    assert counts() == before
    assert media_files(_media_root) == []


def test_real_run_creates_people_audited_and_queues_their_photos(monkeypatch, django_capture_on_commit_callbacks):
    queued = []
    monkeypatch.setattr("verification.services.queueing.enqueue", lambda name, object_id: queued.append(name) or True)
    with django_capture_on_commit_callbacks(execute=True):
        report = people_import(csv_file=csv_file(GOOD_CSV), photos_zip=good_zip(), dry_run=False, operator="op")
    assert report.ok and report.written, report.rows
    assert report.summary() == "Imported 3 row(s): 3 created, 0 updated, 4 photo(s) queued for the face check."
    ada = Person.objects.get(external_id="B-1")
    zone = timezone.get_current_timezone()
    assert ada.name == "Ada Lovelace" and ada.is_active
    assert ada.valid_from == datetime(2027, 1, 1, tzinfo=zone)
    assert ada.valid_until == datetime.combine(datetime(2027, 12, 31).date() + timedelta(days=1), time.min, tzinfo=zone)
    assert not Person.objects.get(external_id="B-3").is_active
    assert list(ada.references.values_list("status", flat=True)) == ["pending", "pending"]
    assert ReferenceImage.objects.count() == 4
    assert queued == ["reference_embed_task"] * 4
    created = AuditEntry.objects.get(kind=AuditEntry.Kind.PERSON_CREATED, person_external_id="B-1")
    assert created.actor == "op" and created.detail["source"] == "csv import people.csv line 2"
    assert AuditEntry.objects.filter(kind=AuditEntry.Kind.REFERENCE_ADDED, actor="op").count() == 4
    assert [row.person_id for row in report.rows] == list(
        Person.objects.filter(external_id__in=["B-1", "B-2", "B-3"]).order_by("external_id").values_list("pk", flat=True)
    )


def test_imported_photos_go_through_the_face_check(fake_model, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        people_import(csv_file=csv_file(GOOD_CSV), photos_zip=good_zip(), dry_run=False, operator="op")
    assert set(ReferenceImage.objects.values_list("status", flat=True)) == {"ready"}
    assert Person.objects.get(external_id="B-2").references.get().status == "ready"


def test_update_existing_changes_the_person_audited_field_by_field(person):
    text = "external_id,name,valid_until\nB-1001,Ada Lovelace,2030-06-30\n"
    refused = people_import(csv_file=csv_file(text), dry_run=False, operator="op")
    assert not refused.ok
    report = people_import(csv_file=csv_file(text), dry_run=False, update_existing=True, operator="op")
    assert report.ok and [row.action for row in report.rows] == ["update"]
    person.refresh_from_db()
    assert timezone.localtime(person.valid_until).date().isoformat() == "2030-07-01"
    changed = AuditEntry.objects.get(kind=AuditEntry.Kind.PERSON_CHANGED)
    assert list(changed.detail["changes"]) == ["valid_until"] and changed.actor == "op"


def test_unreadable_files_are_refused_as_a_whole():
    not_utf8 = io.BytesIO("external_id,name\nB-1,Zoë\n".encode("latin-1"))
    assert "not UTF-8" in people_import(csv_file=not_utf8).errors[0]
    assert "lacks the column(s) name" in people_import(csv_file=csv_file("external_id,fullname\nB-1,A\n")).errors[0]
    assert "not a readable zip" in people_import(csv_file=csv_file(GOOD_CSV), photos_zip=io.BytesIO(b"PK no")).errors[0]
    photos_without_zip = people_import(csv_file=csv_file(GOOD_CSV))
    assert photos_without_zip.rows[0].errors == ["photos: ada-1.jpg, ada-2.jpg listed, but no zip of photos was given."]


def test_the_example_file_imports_cleanly_as_a_dry_run():
    archive = zip_of({"ada-1.jpg": jpeg(1), "ada-2.jpg": jpeg(2), "C-0042/front.png": image_bytes("PNG")})
    report = people_import(csv_file=csv_file(EXAMPLE_CSV), photos_zip=archive)
    assert report.ok, [row.errors for row in report.rows]


# --- The admin page ---------------------------------------------------------------------------------


def upload_files(text: str, archive: io.BytesIO | None = None) -> dict:
    files = {"csv_file": SimpleUploadedFile("staff.csv", text.encode(), content_type="text/csv")}
    if archive is not None:
        files["photos_zip"] = SimpleUploadedFile("photos.zip", archive.getvalue(), content_type="application/zip")
    return files


def persona(django_user_model, role: roles.Role) -> Client:
    user = django_user_model.objects.create_user(role.name.lower().replace(" ", "-"), password="pw-not-used-123",
                                                 is_staff=True)
    user.groups.add(Group.objects.get(name=role.name))
    client = Client()
    client.force_login(user)
    return client


def test_admin_import_page_dry_run_then_import(django_user_model, monkeypatch):
    monkeypatch.setattr("verification.services.queueing.enqueue", lambda name, object_id: True)
    operator = persona(django_user_model, roles.OPERATOR)
    listing = operator.get(reverse("admin:verification_person_changelist")).content.decode()
    assert reverse("admin:verification_person_import") in listing
    page = operator.get(reverse("admin:verification_person_import"))
    assert page.status_code == 200 and "external_id" in page.content.decode()

    dry = operator.post(reverse("admin:verification_person_import"), {**upload_files(GOOD_CSV, good_zip()),
                                                                       "_dry_run": "1"})
    assert dry.status_code == 200
    assert dry.context["report"].ok and not dry.context["report"].written
    assert "Dry run, nothing written." in dry.content.decode()
    assert not Person.objects.exists()

    done = operator.post(reverse("admin:verification_person_import"), {**upload_files(GOOD_CSV, good_zip()),
                                                                        "_import": "1"})
    assert done.context["report"].written
    assert Person.objects.count() == 3 and ReferenceImage.objects.count() == 4
    assert AuditEntry.objects.filter(kind=AuditEntry.Kind.PERSON_CREATED, actor="operator").count() == 3
    content = done.content.decode()
    assert reverse("admin:verification_person_change", args=[Person.objects.get(external_id="B-1").pk]) in content


def test_admin_import_report_shows_each_problem(staff_client):
    response = staff_client.post(reverse("admin:verification_person_import"),
                                 {**upload_files("external_id,name\nB-1,\n"), "_import": "1"})
    content = response.content.decode()
    assert "1 row(s) with problems, so nothing was imported." in content
    assert "name: This field cannot be blank." in content
    assert not Person.objects.exists()


def test_import_needs_the_right_to_add_people_and_photos_need_their_own(django_user_model):
    for role in (roles.AUDITOR, roles.SECURITY_OFFICER, roles.GUARD):
        client = persona(django_user_model, role)
        assert client.get(reverse("admin:verification_person_import")).status_code == 403, role.name
        assert client.post(reverse("admin:verification_person_import"),
                           {**upload_files(GOOD_CSV), "_import": "1"}).status_code == 403
    assert not Person.objects.exists()
    # May add people but not see (so not upload) reference photos: people yes, a zip of photos no.
    from django.contrib.auth.models import Permission

    clerk = django_user_model.objects.create_user("clerk", password="pw-not-used-123", is_staff=True)
    clerk.user_permissions.add(*Permission.objects.filter(codename__in=["view_person", "add_person"]))
    client = Client()
    client.force_login(clerk)
    assert client.post(reverse("admin:verification_person_import"),
                       {**upload_files(GOOD_CSV, good_zip()), "_import": "1"}).status_code == 403
    assert not Person.objects.exists()
    plain = "external_id,name\nB-1,Ada\n"
    assert client.post(reverse("admin:verification_person_import"),
                       {**upload_files(plain), "_import": "1"}).context["report"].written
    assert Person.objects.filter(external_id="B-1").exists()


def test_example_csv_download(staff_client):
    response = staff_client.get(reverse("admin:verification_person_import_example"))
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert response.content.decode() == EXAMPLE_CSV


def test_the_management_command_dry_runs_by_default(tmp_path):
    from django.core.management import call_command

    path = tmp_path / "people.csv"
    path.write_text("external_id,name\nB-1,Ada\n", encoding="utf-8")
    out = io.StringIO()
    call_command("import_people", str(path), stdout=out)
    assert "Dry run, nothing written." in out.getvalue() and not Person.objects.exists()
    call_command("import_people", str(path), "--commit", stdout=out)
    assert Person.objects.get(external_id="B-1").name == "Ada"
    assert AuditEntry.objects.get(kind=AuditEntry.Kind.PERSON_CREATED).actor.startswith("cli:")
