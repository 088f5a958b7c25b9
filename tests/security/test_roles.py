"""Who may do what (issue 9, item 2): one non-superuser persona per role, through the test client.

Threat: any staff account saw every biometric image (snapshots, reference photos, aligned faces), and
staff who could merely view lockouts or devices could unlock people and issue, revoke or reinstate
device tokens; anyone who could delete a person could erase them. Now the roles are groups (migration
0010, from ``verification.roles``), those acts have their own permissions, every admin action names
the one it needs, and the media view checks the permission for the kind of file.

Each persona is a staff account in exactly one group (``view_only`` has Django's view permissions on
every model and nothing else). A refused action is absent from the page and, posted anyway, changes
nothing.
"""
from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from tests.conftest import staff_login as login
from tests.conftest import upload
from verification import roles, services
from verification.models import AuditEntry, CheckIn, Device, Lockout, Person

pytestmark = pytest.mark.django_db

MODELS = ["person", "referenceimage", "device", "checkin", "lockout", "auditentry"]


@pytest.fixture
def persona(django_user_model):
    """``persona(roles.AUDITOR)``: a logged-in staff client in that role's group only (not a superuser)."""

    def make(role: roles.Role) -> Client:
        return login(django_user_model, role.name.lower().replace(" ", "-"), group=role.name)

    return make


@pytest.fixture
def view_only(django_user_model) -> Client:
    """Staff who may look at every model in the admin (Django's view permissions) and do nothing else."""
    return login(django_user_model, "viewer", codenames=[f"view_{model}" for model in MODELS])


@pytest.fixture
def decided(device, enrolled_person, fake_model) -> CheckIn:
    """A decided check-in with its snapshot, its best-matching reference and an audit entry."""
    checkin = services.checkin_submit(device=device, person_external_id="B-1001", snapshot_file=upload())
    services.checkin_process(checkin_id=checkin.pk)
    checkin.refresh_from_db()
    assert checkin.best_reference is not None
    return checkin


def media_url(name: str) -> str:
    return reverse("media", kwargs={"path": name})


def image_urls(checkin: CheckIn) -> dict[str, str]:
    reference = checkin.best_reference
    return {
        "snapshot": media_url(checkin.snapshot.name),
        "reference": media_url(reference.image.name),
        "face": media_url(reference.face_crop.name),
    }


def audit_page(client: Client, checkin: CheckIn) -> str:
    entry = AuditEntry.objects.get(checkin=checkin, kind=AuditEntry.Kind.DECISION)
    response = client.get(reverse("admin:verification_auditentry_change", args=[entry.pk]))
    assert response.status_code == 200
    return response.content.decode()


def action_names(client: Client, changelist: str) -> set[str]:
    response = client.get(reverse(changelist))
    assert response.status_code == 200
    form = response.context["action_form"]  # None when the user may run no action at all
    return set() if form is None else {name for name, _ in form.fields["action"].choices if name}


def run_action(client: Client, changelist: str, action: str, *objects) -> None:
    client.post(reverse(changelist), {"action": action, "_selected_action": [obj.pk for obj in objects]})


# --- The roles -------------------------------------------------------------------------------------


def test_each_role_is_a_group_holding_exactly_its_permissions():
    for role in roles.ROLES:
        group = Group.objects.get(name=role.name)
        held = {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type")}
        assert held == role.permissions, role.name
    # The biometric images, unlocking, erasure, device tokens, export and verification are their own.
    for codename in [roles.VIEW_REFERENCE_PHOTOS, roles.VIEW_SNAPSHOTS, roles.UNLOCK_LOCKOUTS, roles.ERASE_PEOPLE,
                     roles.ISSUE_DEVICE_TOKENS, roles.REVOKE_DEVICES, roles.REINSTATE_DEVICES, roles.EXPORT_AUDIT,
                     roles.VERIFY_AUDIT_CHAIN]:
        assert Permission.objects.filter(content_type__app_label="verification", codename=codename).exists()
    # Only the operator sees reference photos, only the security officer snapshots; nobody but the DPO erases.
    # The guard sees both: comparing a snapshot with the references is the review queue's whole job.
    assert [r.name for r in roles.ROLES if roles.perm(roles.VIEW_REFERENCE_PHOTOS) in r.permissions] == [
        "Operator", "Guard"]
    assert [r.name for r in roles.ROLES if roles.perm(roles.VIEW_SNAPSHOTS) in r.permissions] == [
        "Security officer", "Guard"]
    assert [r.name for r in roles.ROLES if roles.perm(roles.REVIEW_CHECKINS) in r.permissions] == [
        "Security officer", "Guard"]
    assert [r.name for r in roles.ROLES if roles.perm(roles.ERASE_PEOPLE) in r.permissions] == ["Data-protection officer"]


# --- Lockouts --------------------------------------------------------------------------------------


@pytest.fixture
def lockout(db) -> Lockout:
    return Lockout.objects.create(
        scope=Lockout.Scope.PERSON, key="B-1001", label="B-1001", failures=5,
        locked_until=timezone.now() + timedelta(minutes=10),
    )


LOCKOUTS = "admin:verification_lockout_changelist"


def test_view_only_staff_cannot_unlock_but_the_security_officer_can(view_only, persona, lockout):
    assert "unlock" not in action_names(view_only, LOCKOUTS)
    run_action(view_only, LOCKOUTS, "unlock", lockout)
    lockout.refresh_from_db()
    assert lockout.unlocked_at is None
    assert not AuditEntry.objects.filter(kind=AuditEntry.Kind.UNLOCK).exists()

    officer = persona(roles.SECURITY_OFFICER)
    assert "unlock" in action_names(officer, LOCKOUTS)
    run_action(officer, LOCKOUTS, "unlock", lockout)
    lockout.refresh_from_db()
    assert lockout.unlocked_at is not None and lockout.unlocked_by == "security-officer"
    assert AuditEntry.objects.filter(kind=AuditEntry.Kind.UNLOCK).count() == 1
    # The other roles do not even see lockouts.
    for role in (roles.OPERATOR, roles.AUDITOR, roles.DATA_PROTECTION_OFFICER):
        assert persona(role).get(reverse(LOCKOUTS)).status_code == 403, role.name


# --- Device tokens ---------------------------------------------------------------------------------


DEVICES = "admin:verification_device_changelist"
DEVICE_ACTIONS = {"revoke_tokens", "issue_new_tokens", "reinstate_devices"}


def test_view_only_staff_cannot_issue_revoke_or_reinstate_device_tokens(view_only, device_and_token):
    device, token = device_and_token
    assert not DEVICE_ACTIONS & action_names(view_only, DEVICES)
    before = Device.objects.get(pk=device.pk).token_hash
    run_action(view_only, DEVICES, "issue_new_tokens", device)
    run_action(view_only, DEVICES, "revoke_tokens", device)
    device.refresh_from_db()
    assert (device.token_hash, device.revoked_at) == (before, None)
    assert view_only.get(reverse("admin:verification_device_add")).status_code == 403
    services.device_revoke(device=device)
    run_action(view_only, DEVICES, "reinstate_devices", device)
    device.refresh_from_db()
    assert device.revoked_at is not None
    assert not AuditEntry.objects.filter(kind=AuditEntry.Kind.DEVICE_REINSTATED).exists()


def test_only_the_operator_manages_device_tokens(persona, django_user_model, device_and_token):
    device, _ = device_and_token
    operator = persona(roles.OPERATOR)
    assert DEVICE_ACTIONS <= action_names(operator, DEVICES)
    before = device.token_hash
    response = operator.post(
        reverse(DEVICES), {"action": "issue_new_tokens", "_selected_action": [device.pk]}, follow=True
    )
    assert any("shown only now" in str(message) for message in response.context["messages"])
    device.refresh_from_db()
    assert device.token_hash != before
    assert operator.post(reverse("admin:verification_device_add"), {"name": "garage"}).status_code == 302
    assert Device.objects.filter(name="garage").exists()
    for role in (roles.SECURITY_OFFICER, roles.AUDITOR, roles.DATA_PROTECTION_OFFICER):
        assert persona(role).get(reverse(DEVICES)).status_code == 403, role.name
    # The change permission alone (what reinstating needed before) is not enough any more.
    changer = login(django_user_model, "changer", codenames=["view_device", "change_device"])
    assert not DEVICE_ACTIONS & action_names(changer, DEVICES)


# --- Erasure ---------------------------------------------------------------------------------------


PEOPLE = "admin:verification_person_changelist"


def test_an_operator_cannot_erase_but_a_data_protection_officer_can(persona, enrolled_person):
    operator = persona(roles.OPERATOR)
    assert "erase_people" not in action_names(operator, PEOPLE)
    run_action(operator, PEOPLE, "erase_people", enrolled_person)
    assert Person.objects.filter(pk=enrolled_person.pk).exists()
    assert not AuditEntry.objects.filter(kind=AuditEntry.Kind.ERASURE).exists()

    dpo = persona(roles.DATA_PROTECTION_OFFICER)
    assert "erase_people" in action_names(dpo, PEOPLE)
    run_action(dpo, PEOPLE, "erase_people", enrolled_person)
    assert not Person.objects.filter(pk=enrolled_person.pk).exists()
    receipt = AuditEntry.objects.get(kind=AuditEntry.Kind.ERASURE)
    assert "data-protection-officer" in str(receipt.detail)


# --- Biometric images ------------------------------------------------------------------------------


def test_an_auditor_reads_the_audit_log_but_sees_no_biometric_image(persona, decided):
    auditor = persona(roles.AUDITOR)
    for kind, url in image_urls(decided).items():
        assert auditor.get(url).status_code == 403, kind
    page = audit_page(auditor, decided)
    assert "/media/" not in page
    assert decided.claimed_external_id in page


def test_a_security_officer_sees_snapshots_but_not_reference_photos_unless_given(persona, django_user_model, decided):
    officer = persona(roles.SECURITY_OFFICER)
    urls = image_urls(decided)
    response = officer.get(urls["snapshot"])
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == decided.snapshot.open("rb").read()
    assert officer.get(urls["reference"]).status_code == 403
    assert officer.get(urls["face"]).status_code == 403
    page = audit_page(officer, decided)
    assert urls["snapshot"] in page
    assert urls["reference"] not in page and urls["face"] not in page
    checkin_page = officer.get(reverse("admin:verification_checkin_change", args=[decided.pk])).content.decode()
    assert urls["snapshot"] in checkin_page

    # "Unless given": the same role plus the one permission, on a second account.
    given = login(django_user_model, "officer-with-photos", group=roles.SECURITY_OFFICER.name,
                  codenames=[roles.VIEW_REFERENCE_PHOTOS])
    assert given.get(urls["reference"]).status_code == 200
    assert given.get(urls["face"]).status_code == 200
    page = audit_page(given, decided)
    assert urls["snapshot"] in page and urls["reference"] in page


def test_an_operator_sees_reference_photos_but_not_snapshots(persona, decided):
    operator = persona(roles.OPERATOR)
    urls = image_urls(decided)
    assert operator.get(urls["reference"]).status_code == 200
    assert operator.get(urls["face"]).status_code == 200
    assert operator.get(urls["snapshot"]).status_code == 403
    page = operator.get(reverse("admin:verification_person_change", args=[decided.person_id])).content.decode()
    assert urls["reference"] in page and urls["face"] in page


def test_view_only_staff_see_records_without_any_image_or_link(view_only, decided):
    urls = image_urls(decided)
    for kind, url in urls.items():
        assert view_only.get(url).status_code == 403, kind
    person_page = view_only.get(reverse("admin:verification_person_change", args=[decided.person_id]))
    assert person_page.status_code == 200
    checkin_page = view_only.get(reverse("admin:verification_checkin_change", args=[decided.pk]))
    assert checkin_page.status_code == 200
    for page in (person_page.content.decode(), checkin_page.content.decode(), audit_page(view_only, decided)):
        assert "/media/" not in page
    assert "Ready" in person_page.content.decode()  # the reference is listed, its photo is not


def test_a_data_protection_officer_sees_no_reference_photo_while_erasing(persona, decided):
    dpo = persona(roles.DATA_PROTECTION_OFFICER)
    page = dpo.get(reverse("admin:verification_person_change", args=[decided.person_id]))
    assert page.status_code == 200
    assert "/media/" not in page.content.decode()
    for kind, url in image_urls(decided).items():
        assert dpo.get(url).status_code == 403, kind


@pytest.mark.parametrize("trick", ["snapshots/../references/{name}", "snapshots/./../references/{name}",
                                   "snapshots//../references/{name}", "references/{name}/."])
def test_a_snapshot_permission_does_not_reach_reference_photos_through_the_path(persona, decided, trick):
    officer = persona(roles.SECURITY_OFFICER)
    name = decided.best_reference.image.name.split("/", 1)[1]
    response = officer.get("/media/" + trick.format(name=name))
    assert response.status_code in (403, 404)


# --- The audit log: export and chain verification ---------------------------------------------------


def test_exporting_the_audit_log_takes_the_export_permission(view_only, persona, decided):
    export = reverse("admin:verification_auditentry_export")
    assert view_only.get(export).status_code == 403
    assert export not in view_only.get(reverse("admin:verification_auditentry_changelist")).content.decode()
    for role in (roles.AUDITOR, roles.SECURITY_OFFICER):
        client = persona(role)
        assert export in client.get(reverse("admin:verification_auditentry_changelist")).content.decode()
        response = client.get(export)
        assert response.status_code == 200, role.name
        rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
        assert [row["checkin_id"] for row in rows if row["checkin_id"]] == [str(decided.pk)]
    for role in (roles.OPERATOR, roles.DATA_PROTECTION_OFFICER):
        assert persona(role).get(export).status_code == 403, role.name


def test_only_the_auditor_verifies_the_chain_from_the_admin(persona, decided):
    verify = reverse("admin:verification_auditentry_verify")
    auditor = persona(roles.AUDITOR)
    assert verify in auditor.get(reverse("admin:verification_auditentry_changelist")).content.decode()
    response = auditor.post(verify, follow=True)
    assert any("Audit chain intact" in str(message) for message in response.context["messages"])
    officer = persona(roles.SECURITY_OFFICER)
    assert verify not in officer.get(reverse("admin:verification_auditentry_changelist")).content.decode()
    assert officer.post(verify).status_code == 403
