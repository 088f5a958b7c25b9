"""Issue 11, item 2: the audit list readable at 1400 px (the columns that matter, times with seconds and zone,
scores to 3 decimals, search by device), the entry page (every reference's score, readable detail, why it
cannot be edited), the device page's Revoke / Reinstate buttons, and lockout answers that say until when."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from tests.conftest import staff_login as login
from tests.conftest import upload
from verification import roles, services
from verification.models import AuditEntry, CheckIn, Lockout

pytestmark = pytest.mark.django_db

URL = "/api/v1/checkins/"


def local(moment) -> str:
    moment = timezone.localtime(moment)
    return f"{moment:%Y-%m-%d %H:%M:%S} {moment.tzname()}"


@pytest.fixture
def two_references(enrolled_person, fake_model, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        services.reference_add(person=enrolled_person, image_file=upload())
    references = list(enrolled_person.references.order_by("pk"))
    assert [reference.status for reference in references] == ["ready", "ready"]
    return references


@pytest.fixture
def decided(device, two_references, fake_model) -> CheckIn:
    fake_model.scores = [0.9, 0.7]
    checkin = services.checkin_submit(device=device, person_external_id="B-1001", snapshot_file=upload())
    services.checkin_process(checkin_id=checkin.pk)
    checkin.refresh_from_db()
    assert checkin.decision == 1
    return checkin


def entry_url(checkin: CheckIn) -> str:
    entry = AuditEntry.objects.get(checkin=checkin, kind=AuditEntry.Kind.DECISION)
    return reverse("admin:verification_auditentry_change", args=[entry.pk])


# --- The list ---------------------------------------------------------------------------------------


def test_audit_list_shows_the_columns_that_matter_with_seconds_zone_and_four_decimals(staff_client, decided):
    response = staff_client.get(reverse("admin:verification_auditentry_changelist"))
    content = response.content.decode()
    entry = AuditEntry.objects.get(checkin=decided, kind=AuditEntry.Kind.DECISION)
    day, clock = local(entry.created_at).split(" ", 1)  # the date, then the time and zone under it
    assert f'{day}<span class="va-sub">{clock}</span>' in content and clock.count(":") == 2
    assert "0.8000 / 0.5000" in content  # the mean of 0.9 and 0.7, and the threshold
    # Eight narrow columns (plus the checkbox): model, timings, hashes live on the entry's page.
    headers = [name for name in response.context["cl"].list_display if name != "action_checkbox"]
    assert headers == ["seq", "time", "event", "device_name", "person", "decision_badge", "score_threshold",
                       "reason_text"]
    assert "column-model_version" not in content and "column-processing_ms" not in content


def test_audit_list_searches_by_device(staff_client, decided, other_device_and_token):
    listed = staff_client.get(reverse("admin:verification_auditentry_changelist"), {"q": "back-door"})
    assert {entry.device_name for entry in listed.context["cl"].result_list} == {"back-door"}
    decisions = staff_client.get(reverse("admin:verification_auditentry_changelist"),
                                 {"q": "front-door", "kind__exact": "decision"})
    assert decisions.context["cl"].result_count == 1


# --- The entry's page -------------------------------------------------------------------------------


def test_decision_records_every_references_score(decided, two_references):
    entry = AuditEntry.objects.get(checkin=decided, kind=AuditEntry.Kind.DECISION)
    assert entry.detail["reference_scores"] == [
        {"reference_id": two_references[0].pk, "score": pytest.approx(0.9)},
        {"reference_id": two_references[1].pk, "score": pytest.approx(0.7)},
    ]


def test_a_mean_rule_model_decides_on_the_mean_and_says_so(staff_client, decided):
    entry = AuditEntry.objects.get(checkin=decided, kind=AuditEntry.Kind.DECISION)
    assert entry.detail["decision_rule"] == "mean" and entry.score == pytest.approx(0.8)
    assert "The decision compares the mean of these (0.8000)" in staff_client.get(entry_url(decided)).content.decode()


def test_a_template_rule_model_decides_on_the_template_score_not_the_mean(staff_client, device, two_references,
                                                                           fake_model):
    # Both references score 0.9 / 0.7 (mean 0.8, over the 0.5 threshold), but under the template rule the
    # snapshot's score against the person's template is what decides: 0.3 refuses.
    fake_model.scores, fake_model.rule, fake_model.template_score = [0.9, 0.7], "template", 0.3
    checkin = services.checkin_submit(device=device, person_external_id="B-1001", snapshot_file=upload())
    services.checkin_process(checkin_id=checkin.pk)
    checkin.refresh_from_db()
    assert (checkin.decision, checkin.reason, checkin.score) == (0, "no_match", pytest.approx(0.3))
    entry = AuditEntry.objects.get(checkin=checkin, kind=AuditEntry.Kind.DECISION)
    assert entry.detail["decision_rule"] == "template" and entry.score == pytest.approx(0.3)
    assert [row["score"] for row in entry.detail["reference_scores"]] == [pytest.approx(0.9), pytest.approx(0.7)]
    content = staff_client.get(entry_url(checkin)).content.decode()
    assert "the mean of these references&#x27; embeddings (the person&#x27;s template) (0.3000)" in content


def test_a_score_just_under_a_close_threshold_reads_as_under_it(staff_client, device, two_references, fake_model):
    # AS-normalised scores crowd near 1 (siamese-lfw-3.0.2's thresholds for 1-5 references lie within 0.005),
    # so a refused score and its threshold must not print alike: 0.98165 < 0.98173 read "0.982 / 0.982"
    # with three decimals.
    fake_model.thresholds, fake_model.scores = ((1, 0.98173), (2, 0.98173)), [0.98165]
    checkin = services.checkin_submit(device=device, person_external_id="B-1001", snapshot_file=upload())
    services.checkin_process(checkin_id=checkin.pk)
    checkin.refresh_from_db()
    assert (checkin.decision, checkin.reason) == (0, "no_match")
    audit_list = staff_client.get(reverse("admin:verification_auditentry_changelist")).content.decode()
    assert "0.9816 / 0.9817" in audit_list
    checkins = staff_client.get(reverse("admin:verification_checkin_changelist")).content.decode()
    assert "0.9816" in checkins and "0.982<" not in checkins


def test_entry_page_shows_every_references_score_with_its_aligned_face(staff_client, decided, two_references):
    content = staff_client.get(entry_url(decided)).content.decode()
    assert "Score of each reference" in content
    assert "0.900" in content and "0.700" in content and "best match" in content
    for reference in two_references:
        assert f"#{reference.pk}" in content
        assert reverse("media", kwargs={"path": reference.face_crop.name}) in content


def test_entry_page_shows_scores_but_no_faces_to_those_who_may_not_see_them(django_user_model, decided, two_references):
    auditor = login(django_user_model, "auditor", group=roles.AUDITOR.name)
    content = auditor.get(entry_url(decided)).content.decode()
    assert "0.900" in content and "0.700" in content
    assert "/media/" not in content


def test_entry_page_reads_the_detail_in_words_with_the_exact_json_one_click_away(staff_client, decided):
    content = staff_client.get(entry_url(decided)).content.decode()
    assert '<table class="va-detail">' in content
    assert "Timings" in content and " ms" in content and "Best-matching reference" in content
    assert "Exact detail as hashed (JSON)" in content


def test_entry_page_of_an_older_decision_says_only_the_decision_score_was_recorded(staff_client, device, enrolled_person):
    from verification.audit import audit_append

    entry = audit_append(kind=AuditEntry.Kind.DECISION, device_name="front-door", person_external_id="B-1001",
                         decision=1, score=0.91, threshold=0.5, detail={"best_reference_id": 1})
    content = staff_client.get(reverse("admin:verification_auditentry_change", args=[entry.pk])).content.decode()
    assert "Only the decision score (0.9100) was recorded" in content


def test_audit_entries_explain_why_they_cannot_be_changed(staff_client, decided):
    url = entry_url(decided)
    entry = AuditEntry.objects.get(checkin=decided, kind=AuditEntry.Kind.DECISION)
    before = entry.entry_hash
    page = staff_client.get(url).content.decode()
    assert "This entry cannot be edited or deleted." in page
    for response in (
        staff_client.get(reverse("admin:verification_auditentry_add")),
        staff_client.post(url, {"decision": "0"}),
        staff_client.get(reverse("admin:verification_auditentry_delete", args=[entry.pk])),
        staff_client.post(reverse("admin:verification_auditentry_delete", args=[entry.pk]), {"post": "yes"}),
    ):
        assert response.status_code == 403
        content = response.content.decode()
        assert "append-only and hash-chained" in content and "Verify the chain" in content
    entry.refresh_from_db()
    assert entry.entry_hash == before


# --- The device page: Revoke / Reinstate --------------------------------------------------------------


def test_device_page_revoke_button_asks_then_revokes_audited(django_user_model, device_and_token):
    device, token = device_and_token
    operator = login(django_user_model, "operator", group=roles.OPERATOR.name)
    page = operator.get(reverse("admin:verification_device_change", args=[device.pk])).content.decode()
    revoke_url = reverse("admin:verification_device_revoke", args=[device.pk])
    assert f'href="{revoke_url}"' in page and ">Revoke<" in page

    confirmation = operator.get(revoke_url)
    assert confirmation.status_code == 200
    assert "its API token is refused" in confirmation.content.decode()
    device.refresh_from_db()
    assert device.revoked_at is None  # asking changes nothing

    done = operator.post(revoke_url, follow=True)
    device.refresh_from_db()
    assert device.revoked_at is not None
    assert any(f"front-door is revoked as of {local(device.revoked_at)}" in str(m) for m in done.context["messages"])
    revoked = AuditEntry.objects.get(kind=AuditEntry.Kind.DEVICE_REVOKED)
    assert (revoked.actor, revoked.device_name) == ("operator", "front-door")
    api = Client().post(URL, {"snapshot": upload(), "person": "B-1001"}, HTTP_AUTHORIZATION=f"Token {token}")
    assert api.status_code == 401

    page = operator.get(reverse("admin:verification_device_change", args=[device.pk])).content.decode()
    assert ">Revoke<" not in page and "Reinstate (new token)" in page and "is <strong>revoked</strong>" in page


def test_device_page_reinstate_button_issues_a_new_token_shown_once(django_user_model, device_and_token):
    device, old_token = device_and_token
    services.device_revoke(device=device, operator="someone")
    operator = login(django_user_model, "operator", group=roles.OPERATOR.name)
    done = operator.post(reverse("admin:verification_device_reinstate", args=[device.pk]), follow=True)
    device.refresh_from_db()
    assert device.revoked_at is None
    shown = " ".join(str(m) for m in done.context["messages"])
    assert "shown only now" in shown and old_token not in shown
    assert AuditEntry.objects.filter(kind=AuditEntry.Kind.DEVICE_REINSTATED, actor="operator").exists()


def test_revoke_button_needs_the_revoke_permission(django_user_model, device):
    viewer = login(django_user_model, "viewer", codenames=("view_device",))
    page = viewer.get(reverse("admin:verification_device_change", args=[device.pk])).content.decode()
    assert reverse("admin:verification_device_revoke", args=[device.pk]) not in page
    for client in (viewer, login(django_user_model, "officer", group=roles.SECURITY_OFFICER.name)):
        assert client.get(reverse("admin:verification_device_revoke", args=[device.pk])).status_code == 403
        assert client.post(reverse("admin:verification_device_revoke", args=[device.pk])).status_code == 403
        assert client.post(reverse("admin:verification_device_reinstate", args=[device.pk])).status_code == 403
    device.refresh_from_db()
    assert device.revoked_at is None
    assert not AuditEntry.objects.filter(kind=AuditEntry.Kind.DEVICE_REVOKED).exists()


# --- Lockouts say until when ------------------------------------------------------------------------


def test_a_locked_out_device_is_told_until_when(device_client, device):
    until = timezone.now() + timedelta(minutes=10)
    Lockout.objects.create(scope=Lockout.Scope.DEVICE, key=str(device.pk), label=device.name, failures=20,
                           locked_until=until)
    response = device_client.post(URL, {"snapshot": upload(), "person": "B-1001"}, format="multipart")
    assert response.status_code == 429
    message = response.json()["message"]
    assert f"until {local(until)}" in message and "or until an operator unlocks it" in message


def test_lockout_list_says_until_when_and_filters_those_in_force(staff_client):
    until = timezone.now() + timedelta(minutes=10)
    Lockout.objects.create(scope=Lockout.Scope.PERSON, key="B-1", label="B-1", failures=5, locked_until=until)
    Lockout.objects.create(scope=Lockout.Scope.PERSON, key="B-2", label="B-2", failures=5,
                           locked_until=timezone.now() - timedelta(minutes=1))
    response = staff_client.get(reverse("admin:verification_lockout_changelist"), {"in_force": "yes"})
    assert [lockout.key for lockout in response.context["cl"].result_list] == ["B-1"]
    content = response.content.decode()
    assert f"{local(until)}</time> (in 9 min" in content or f"{local(until)}</time> (in 10 min" in content


# --- The snapshot's aligned face --------------------------------------------------------------------


def test_the_worker_keeps_the_snapshots_aligned_face_for_the_entry_page(staff_client, decided, settings):
    assert decided.probe_face.name.startswith("probe_faces/") and decided.probe_face.name.endswith(".png")
    assert (settings.MEDIA_ROOT / decided.probe_face.name).is_file()
    face_url = reverse("media", kwargs={"path": decided.probe_face.name})
    content = staff_client.get(entry_url(decided)).content.decode()
    assert "Aligned face in the snapshot" in content and face_url in content


def test_the_snapshots_aligned_face_needs_the_right_to_see_snapshots(django_user_model, decided):
    face_url = reverse("media", kwargs={"path": decided.probe_face.name})
    officer = login(django_user_model, "officer", group=roles.SECURITY_OFFICER.name)
    assert face_url in officer.get(entry_url(decided)).content.decode()
    assert officer.get(face_url).status_code == 200
    operator = login(django_user_model, "operator", group=roles.OPERATOR.name)  # references, not snapshots
    assert operator.get(face_url).status_code == 403
    auditor = login(django_user_model, "auditor", group=roles.AUDITOR.name)
    assert face_url not in auditor.get(entry_url(decided)).content.decode()


def test_retention_and_the_media_check_treat_the_aligned_face_as_part_of_the_snapshot(decided, settings):
    path = settings.MEDIA_ROOT / decided.probe_face.name
    assert services.media_check().orphans == []  # owned by its check-in
    settings.RETENTION_SNAPSHOT_DAYS = 1
    services.retention_apply(now=timezone.now() + timedelta(days=2))
    decided.refresh_from_db()
    assert not path.exists() and not decided.probe_face and not decided.snapshot


def test_a_redelivered_checkin_keeps_one_aligned_face(decided, settings):
    import numpy as np

    from verification.services.probe_faces import probe_face_store

    assert probe_face_store(checkin_id=decided.pk, crop=np.zeros((100, 100, 3), dtype=np.uint8)) == ""  # decided
    assert sorted(path.name for path in (settings.MEDIA_ROOT / "probe_faces").iterdir()) == [
        decided.probe_face.name.split("/")[1]
    ]


def test_integrators_are_told_until_when_a_locked_out_person_is_refused(device, device_client, enrolled_person,
                                                                        fake_model, settings):
    settings.CHECKIN_RESPONSE_DETAIL = "full"
    until = timezone.now() + timedelta(minutes=10)
    Lockout.objects.create(scope=Lockout.Scope.PERSON, key="B-1001", label="B-1001", failures=5, locked_until=until)
    checkin = services.checkin_submit(device=device, person_external_id="B-1001", snapshot_file=upload())
    services.checkin_process(checkin_id=checkin.pk)
    body = device_client.get(reverse("api-checkin-detail", kwargs={"pk": checkin.pk})).json()
    assert body["reason"] == "locked_out"
    assert body["locked_until"] is not None
    from django.utils.dateparse import parse_datetime

    assert parse_datetime(body["locked_until"]) == until
    fake_model.scores = [0.9]
    admitted = services.checkin_submit(device=device, person_external_id="B-1001", snapshot_file=upload())
    Lockout.objects.update(unlocked_at=timezone.now(), unlocked_by="officer")
    services.checkin_process(checkin_id=admitted.pk)
    assert device_client.get(reverse("api-checkin-detail", kwargs={"pk": admitted.pk})).json()["locked_until"] is None
