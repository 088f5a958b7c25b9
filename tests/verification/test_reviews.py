"""The review band (issue 10, item 1): three bands, the guard's queue, the door's answer, timeouts.

The fake model (tests/conftest.py) admits at 0.875 and sends scores from 0.625 up to it to a guard.
Each test checks the answer, the row after ``refresh_from_db()`` and the audit entries.
"""
from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from tests.conftest import staff_login as login
from tests.conftest import upload
from verification import roles, selectors, services
from verification.audit import audit_verify
from verification.models import AuditEntry, CheckIn, Lockout
from verification.services import reviews, thresholds

pytestmark = pytest.mark.django_db

# Exact in float32 (the model scores in float32), so the boundaries are the thresholds themselves.
ADMIT, REVIEW = 0.875, 0.625
API = "/api/v1/checkins/"
QUEUE = "admin:verification_checkinreview_changelist"


@pytest.fixture
def band_model(fake_model):
    fake_model.threshold = ADMIT
    fake_model.review_thresholds = ((1, REVIEW),)
    return fake_model


def checkin_scoring(score: float, *, device, fake) -> CheckIn:  # noqa: ANN001
    fake.scores = [score]
    checkin = services.checkin_submit(device=device, person_external_id="B-1001", snapshot_file=upload())
    services.checkin_process(checkin_id=checkin.pk)
    checkin.refresh_from_db()
    return checkin


@pytest.fixture
def in_review(device, enrolled_person, band_model) -> CheckIn:
    checkin = checkin_scoring(0.75, device=device, fake=band_model)
    assert checkin.status == CheckIn.Status.REVIEW
    return checkin


def entries(checkin: CheckIn, kind: str) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(checkin_id=checkin.pk, kind=kind).order_by("seq"))


def overdue(checkin: CheckIn) -> None:
    CheckIn.objects.filter(pk=checkin.pk).update(review_expires_at=timezone.now() - timedelta(seconds=1))


# --- The three bands -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("score", "status", "decision", "reason"),
    [
        (0.95, "decided", 1, ""),
        (ADMIT, "decided", 1, ""),  # the admit threshold admits
        (0.8749, "review", None, ""),
        (REVIEW, "review", None, ""),  # the review threshold is in the band
        (0.6249, "decided", 0, "no_match"),
    ],
)
def test_band_boundaries(device, enrolled_person, band_model, score, status, decision, reason):
    checkin = checkin_scoring(score, device=device, fake=band_model)

    assert (checkin.status, checkin.decision, checkin.reason) == (status, decision, reason)
    assert checkin.threshold == ADMIT
    assert checkin.review_threshold == REVIEW  # recorded on every scored decision while the band is on
    assert checkin.score == pytest.approx(score)
    if status == "review":
        assert checkin.decided_at is None and checkin.reviewed_by == ""
        assert checkin.review_expires_at - checkin.review_started_at == timedelta(seconds=60)
        [opened] = entries(checkin, "review")
        assert opened.detail["verdict"] == "review" and opened.detail["review_threshold"] == REVIEW
        assert opened.detail["threshold_source"] == "model"
        assert opened.score == pytest.approx(score) and opened.threshold == ADMIT
        assert opened.actor == "device:front-door"
        # The guard's audit page shows every reference's score, as for a decision the model made alone.
        assert [r["score"] for r in opened.detail["reference_scores"]] == pytest.approx([score] * len(opened.detail["reference_scores"]))
        assert len(opened.detail["reference_scores"]) >= 1
        assert entries(checkin, "decision") == []  # the decision entry comes with the guard or the timeout
    else:
        [decided] = entries(checkin, "decision")
        assert decided.decision == decision and decided.detail["review_threshold"] == REVIEW
        assert entries(checkin, "review") == []


def test_band_off_is_the_two_band_decision_exactly_as_before(device, enrolled_person, band_model, settings):
    settings.REVIEW_BAND = False
    refused = checkin_scoring(0.75, device=device, fake=band_model)
    admitted = checkin_scoring(0.95, device=device, fake=band_model)

    assert (refused.status, refused.decision, refused.reason) == ("decided", 0, "no_match")
    assert (admitted.status, admitted.decision, admitted.reason) == ("decided", 1, "")
    for checkin in (refused, admitted):
        assert checkin.review_threshold is None and checkin.review_started_at is None
        [decided] = entries(checkin, "decision")
        assert "review_threshold" not in decided.detail
    assert not AuditEntry.objects.filter(kind="review").exists()


def test_a_model_without_a_calibrated_band_decides_in_two_bands(device, enrolled_person, fake_model):
    fake_model.threshold = ADMIT  # no review_thresholds
    checkin = checkin_scoring(0.75, device=device, fake=fake_model)
    assert (checkin.status, checkin.decision, checkin.reason) == ("decided", 0, "no_match")
    assert checkin.review_threshold is None


def test_the_review_edge_never_rises_above_the_admit_threshold(device, enrolled_person, band_model):
    band_model.review_thresholds = ((1, 0.95),)  # e.g. the model's band under a site's lower admit threshold
    checkin = checkin_scoring(0.9, device=device, fake=band_model)
    assert (checkin.status, checkin.decision, checkin.review_threshold) == ("decided", 1, ADMIT)


def test_a_lockout_in_force_refuses_instead_of_opening_a_review(device, enrolled_person, band_model):
    Lockout.objects.create(scope=Lockout.Scope.PERSON, key="B-1001", label="B-1001", failures=5,
                           locked_until=timezone.now() + timedelta(minutes=10))
    checkin = services.checkin_submit(device=device, person_external_id="B-1001", snapshot_file=upload())
    CheckIn.objects.filter(pk=checkin.pk).update(status=CheckIn.Status.PROCESSING)
    opened = services.checkin_review_open(
        checkin_id=checkin.pk, person=enrolled_person, score=0.75, threshold=ADMIT, review_threshold=REVIEW,
        model_version="fake-1",
    )
    checkin.refresh_from_db()
    assert opened is True
    assert (checkin.status, checkin.decision, checkin.reason) == ("decided", 0, "locked_out")
    [decided] = entries(checkin, "decision")
    assert decided.detail["superseded"]["verdict"] == "review"


# --- The guard's decision ------------------------------------------------------------------------


def test_a_guard_admits_and_the_audit_log_records_verdict_decision_and_guard(in_review, device_client):
    assert services.checkin_review_decide(checkin_id=in_review.pk, decision=1, guard="gate-guard") is True

    in_review.refresh_from_db()
    assert (in_review.status, in_review.decision, in_review.reason) == ("decided", 1, "")
    assert in_review.reviewed_by == "gate-guard" and in_review.decided_at is not None
    assert in_review.timings["review_ms"] >= 0
    [opened] = entries(in_review, "review")
    [decided] = entries(in_review, "decision")
    assert decided.actor == "gate-guard"
    assert decided.detail["model_verdict"] == "review"
    assert decided.detail["guard"] == "gate-guard" and decided.detail["guard_decision"] == "admit"
    assert decided.detail["review_entry_seq"] == opened.seq and decided.seq > opened.seq
    assert decided.detail["threshold_source"] == "model"
    assert decided.score == pytest.approx(0.75) and decided.threshold == ADMIT
    assert audit_verify()[1] is None
    body = device_client.get(f"{API}{in_review.pk}/").json()
    assert (body["status"], body["decision"], body["reason"]) == ("decided", 1, "")


def test_a_guard_refuses_the_door_hears_not_recognised_and_it_counts_toward_lockouts(
    in_review, device_client, settings
):
    settings.LOCKOUT_PERSON_MAX_FAILURES = 1
    assert services.checkin_review_decide(checkin_id=in_review.pk, decision=0, guard="gate-guard") is True

    in_review.refresh_from_db()
    assert (in_review.decision, in_review.reason, in_review.reviewed_by) == (0, "guard_refused", "gate-guard")
    [decided] = entries(in_review, "decision")
    assert decided.detail["guard_decision"] == "refuse" and decided.reason == "guard_refused"
    body = device_client.get(f"{API}{in_review.pk}/").json()
    assert (body["status"], body["decision"], body["reason"]) == ("decided", 0, "not_recognised")
    assert Lockout.objects.filter(scope="person", key="B-1001").exists()


def test_a_guard_cannot_decide_twice(in_review):
    assert services.checkin_review_decide(checkin_id=in_review.pk, decision=1, guard="first") is True
    assert services.checkin_review_decide(checkin_id=in_review.pk, decision=0, guard="second") is False

    in_review.refresh_from_db()
    assert (in_review.decision, in_review.reviewed_by) == (1, "first")
    assert len(entries(in_review, "decision")) == 1


def test_a_guard_cannot_decide_a_checkin_that_is_not_in_review(device, enrolled_person, band_model):
    decided = checkin_scoring(0.95, device=device, fake=band_model)
    pending = services.checkin_submit(device=device, person_external_id="B-1001", snapshot_file=upload())

    for checkin in (decided, pending):
        assert services.checkin_review_decide(checkin_id=checkin.pk, decision=0, guard="gate-guard") is False
    decided.refresh_from_db()
    pending.refresh_from_db()
    assert (decided.decision, decided.reviewed_by) == (1, "")
    assert (pending.status, pending.decision) == ("pending", None)
    assert services.checkin_review_decide(checkin_id=999_999, decision=1, guard="gate-guard") is False


def test_a_guards_decision_after_the_deadline_is_not_taken(in_review):
    overdue(in_review)
    assert services.checkin_review_decide(checkin_id=in_review.pk, decision=1, guard="late-guard") is False

    in_review.refresh_from_db()
    assert (in_review.decision, in_review.reason, in_review.reviewed_by) == (0, "review_timeout", "")


# --- Timeouts: from beat and from the door's poll ------------------------------------------------


def test_the_sweep_expires_overdue_reviews_once_and_they_lock_nobody_out(in_review, device, band_model, settings):
    settings.LOCKOUT_PERSON_MAX_FAILURES = settings.LOCKOUT_DEVICE_MAX_FAILURES = 1
    fresh = checkin_scoring(0.7, device=device, fake=band_model)
    overdue(in_review)

    assert services.checkin_reviews_expire() == [in_review.pk]
    assert services.checkin_reviews_expire() == []

    in_review.refresh_from_db()
    fresh.refresh_from_db()
    assert (in_review.status, in_review.decision, in_review.reason) == ("decided", 0, "review_timeout")
    assert fresh.status == "review"  # not due yet
    [decided] = entries(in_review, "decision")
    assert decided.actor == "system" and decided.detail["guard"] is None
    assert decided.detail["model_verdict"] == "review"
    assert not Lockout.objects.exists()


def test_the_beat_task_runs_the_sweep(in_review, settings):
    from verification import tasks

    overdue(in_review)
    assert tasks.reviews_expire_task.apply().get() == [in_review.pk]
    assert "expire-overdue-reviews" in settings.CELERY_BEAT_SCHEDULE
    assert settings.CELERY_BEAT_SCHEDULE["expire-overdue-reviews"]["task"] == "verification.tasks.reviews_expire_task"


def test_a_door_polling_an_overdue_review_gets_review_timeout_without_beat(in_review, device_client):
    assert device_client.get(f"{API}{in_review.pk}/").json()["status"] == "review"  # not due: untouched
    overdue(in_review)

    first = device_client.get(f"{API}{in_review.pk}/").json()
    second = device_client.get(f"{API}{in_review.pk}/").json()

    assert (first["status"], first["decision"], first["reason"]) == ("decided", 0, "review_timeout")
    assert second == first
    in_review.refresh_from_db()
    assert in_review.reason == "review_timeout"
    assert len(entries(in_review, "decision")) == 1


# --- The door's API -----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_door_is_told_review_at_once_then_polls_for_the_guards_decision(
    device_client, enrolled_person, band_model, settings
):
    settings.CHECKIN_RESPONSE_DETAIL = "full"
    band_model.scores = [0.75]
    started = time.monotonic()
    response = device_client.post(API, {"snapshot": upload(), "person": "B-1001", "wait": "5"}, format="multipart")
    elapsed = time.monotonic() - started

    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["status"], body["decision"], body["reason"]) == ("review", None, "")
    assert body["review_threshold"] == REVIEW and body["threshold"] == ADMIT
    assert response["Location"] == body["url"]
    assert elapsed < 4  # the wait ended at review, not at its 5 s

    services.checkin_review_decide(checkin_id=body["id"], decision=1, guard="gate-guard")
    polled = device_client.get(body["url"]).json()
    assert (polled["status"], polled["decision"]) == ("decided", 1)


def test_the_openapi_schema_names_review(client):
    schema = client.get("/api/schema/?format=json")
    assert schema.status_code == 200
    text = schema.content.decode()
    assert "review" in json.loads(text)["components"]["schemas"]["StatusEnum"]["enum"]
    assert "review_timeout" in text and "please wait" in text


# --- The review queue in the admin ---------------------------------------------------------------


@pytest.fixture
def guard(django_user_model) -> Client:
    return login(django_user_model, "gate-guard", roles.GUARD.name)


def decide_url(checkin: CheckIn) -> str:
    return reverse("admin:verification_checkinreview_decide", args=[checkin.pk])


def test_the_queue_shows_the_oldest_first_with_snapshot_references_score_and_thresholds(
    in_review, device, band_model, guard
):
    newer = checkin_scoring(0.8123, device=device, fake=band_model)
    response = guard.get(reverse(QUEUE))

    assert response.status_code == 200
    page = response.content.decode()
    assert page.index(f"review-{in_review.pk}") < page.index(f"review-{newer.pk}")
    assert "0.812" in page and "0.750" in page and "0.875" in page and "0.625" in page
    assert reverse("media", kwargs={"path": in_review.snapshot.name}) in page
    assert reverse("media", kwargs={"path": in_review.best_reference.image.name}) in page
    assert 'http-equiv="refresh"' in page
    assert 'name="csrfmiddlewaretoken"' in page
    # Both thresholds of the shipped model (one reference) with their expected rates, 4 decimals.
    shipped = json.loads(thresholds.SHIPPED_MANIFEST.read_text())
    admit, review = shipped["operating_point"]["thresholds"]["1"], shipped["review_band"]["thresholds"]["1"]
    assert f"{admit:.4f}" in page and f"{review:.4f}" in page and "%" in page


def test_a_guard_admits_from_the_queue(in_review, guard):
    response = guard.post(decide_url(in_review), {"decision": "admit"}, follow=True)

    assert response.status_code == 200
    in_review.refresh_from_db()
    assert (in_review.decision, in_review.reviewed_by) == (1, "gate-guard")
    assert entries(in_review, "decision")[0].actor == "gate-guard"
    assert "admitted" in response.content.decode()
    assert f"review-{in_review.pk}" not in response.content.decode()


def test_the_second_guard_is_told_who_decided_first(in_review, guard, django_user_model):
    other = login(django_user_model, "other-guard", roles.GUARD.name)
    guard.post(decide_url(in_review), {"decision": "refuse"})
    response = other.post(decide_url(in_review), {"decision": "admit"}, follow=True)

    in_review.refresh_from_db()
    assert (in_review.decision, in_review.reason, in_review.reviewed_by) == (0, "guard_refused", "gate-guard")
    page = response.content.decode()
    assert "already refused by gate-guard" in page and "not recorded" in page


def test_a_guard_answering_a_timed_out_review_is_told_so(in_review, guard):
    overdue(in_review)
    response = guard.post(decide_url(in_review), {"decision": "admit"}, follow=True)
    in_review.refresh_from_db()
    assert in_review.reason == "review_timeout"
    assert "timed out" in response.content.decode()


@pytest.mark.parametrize("role", [roles.OPERATOR, roles.AUDITOR, roles.DATA_PROTECTION_OFFICER])
def test_only_reviewers_see_the_queue_or_decide(in_review, django_user_model, role):
    client = login(django_user_model, role.name.lower().replace(" ", "-"), role.name)

    assert client.get(reverse(QUEUE)).status_code == 403
    assert client.post(decide_url(in_review), {"decision": "admit"}).status_code == 403
    assert "review queue" not in client.get(reverse("admin:index")).content.decode().lower()
    in_review.refresh_from_db()
    assert in_review.status == "review"


def test_the_security_officer_may_review_without_seeing_reference_photos(in_review, django_user_model):
    officer = login(django_user_model, "officer", roles.SECURITY_OFFICER.name)
    page = officer.get(reverse(QUEUE)).content.decode()

    assert reverse("media", kwargs={"path": in_review.snapshot.name}) in page
    assert reverse("media", kwargs={"path": in_review.best_reference.image.name}) not in page
    assert "no permission to view reference photos" in page
    assert officer.post(decide_url(in_review), {"decision": "refuse"}).status_code == 302
    in_review.refresh_from_db()
    assert in_review.reviewed_by == "officer"


def test_anonymous_and_non_staff_are_sent_to_the_login(in_review, client, django_user_model):
    assert client.get(reverse(QUEUE)).status_code == 302
    assert client.post(decide_url(in_review), {"decision": "admit"}).status_code == 302
    in_review.refresh_from_db()
    assert in_review.status == "review"


def test_deciding_needs_a_post_with_csrf_and_a_known_decision(in_review, django_user_model):
    strict = login(django_user_model, "strict-guard", roles.GUARD.name, enforce_csrf=True)

    assert strict.get(decide_url(in_review)).status_code == 405
    assert strict.post(decide_url(in_review), {"decision": "admit"}).status_code == 403  # no CSRF token
    lenient = login(django_user_model, "lenient-guard", roles.GUARD.name)
    assert lenient.post(decide_url(in_review), {"decision": "maybe"}).status_code == 400
    in_review.refresh_from_db()
    assert in_review.status == "review"


# --- Metrics and where the thresholds come from ----------------------------------------------------


def test_the_metrics_export_waiting_reviews_and_how_reviews_ended(in_review, device, band_model):
    from verification.monitoring import metrics

    text = metrics.exposition().decode()
    assert "accesscontrol_reviews_waiting 1.0" in text
    assert 'accesscontrol_checkins_undecided{status="review"} 1.0' in text
    assert "accesscontrol_review_oldest_age_seconds" in text

    services.checkin_review_decide(checkin_id=in_review.pk, decision=1, guard="gate-guard")
    timed_out = checkin_scoring(0.7, device=device, fake=band_model)
    overdue(timed_out)
    services.checkin_reviews_expire()
    text = metrics.exposition().decode()
    assert "accesscontrol_reviews_waiting 0.0" in text
    assert 'accesscontrol_reviews_ended_total{outcome="admit"} 1.0' in text
    assert 'accesscontrol_reviews_ended_total{outcome="timeout"} 1.0' in text
    assert 'accesscontrol_reviews_ended_total{outcome="refuse"} 0.0' in text
    assert 'accesscontrol_decisions_total{decision="refused",reason="review_timeout"} 1.0' in text


def test_the_shipped_model_has_a_calibrated_band_under_its_admit_thresholds():
    from ml.inference import SHIPPED_MODEL_DIR

    assert thresholds.SHIPPED_MANIFEST == SHIPPED_MODEL_DIR / "manifest.json"
    table = thresholds.thresholds_table()
    assert table.source == "model" and not table.problem and table.review_far == pytest.approx(0.01)
    assert [row.references for row in table.rows] == [1, 2, 3, 4, 5]
    for row in table.rows:
        assert 0.0 < row.review_threshold < row.threshold
        assert row.review_far == pytest.approx(0.01, abs=1e-4) and row.far == pytest.approx(1e-3, abs=1e-5)
        assert row.review_frr < row.frr  # the band refuses fewer genuine people outright


def test_the_worker_reads_the_band_from_the_manifest(monkeypatch):
    from verification import inference

    class Manifested:
        version, threshold = "m-1", 0.9
        manifest = {"review_band": {"review_far": 0.01, "thresholds": {"1": 0.6, "3": 0.5},
                                    "per_references": {"1": {"far": 0.01, "frr": 0.2}}}}

        def thresholds(self):
            return {1: 0.9, 3: 0.8}

    monkeypatch.setattr(inference, "get_model", lambda: Manifested())
    info = inference.model_info()
    assert info.review_thresholds == ((1, 0.6), (3, 0.5)) and info.review_far == 0.01
    assert info.review_expected == ((1, 0.01, 0.2),)
    assert (info.review_threshold_for(1), info.review_threshold_for(2), info.review_threshold_for(7)) == (0.6, 0.6, 0.5)
    assert reviews.review_threshold(info=info, references=3) == 0.5


def test_selectors_list_the_queue_oldest_first(in_review, device, band_model):
    newer = checkin_scoring(0.7, device=device, fake=band_model)
    assert [c.pk for c in selectors.reviews_waiting()] == [in_review.pk, newer.pk]


def test_the_calibration_page_shows_both_thresholds_with_the_sites_expected_rates(staff_client):
    from verification.models import SiteCalibration

    rates = {"threshold": 0.97, "far": 0.001, "frr": 0.4, "far_ci95": [0, 0.01], "frr_ci95": [0.3, 0.5]}
    calibration = SiteCalibration.objects.create(
        model_version="fake-1", target_far=0.001, thresholds={"1": 0.97}, review_target_far=0.01,
        review_thresholds={"1": 0.81}, created_by="officer",
        figures={"1": {"proposed": rates, "review_proposed": {**rates, "threshold": 0.81, "far": 0.01, "frr": 0.2}}},
    )
    page = staff_client.get(reverse("admin:verification_sitecalibration_changelist")).content.decode()
    assert "k=1: admit 0.9700 FAR 0.10% FRR 40.0%; review 0.8100 FAR 1.00% FRR 20.0%" in page
    detail = staff_client.get(reverse("admin:verification_sitecalibration_change", args=[calibration.pk]))
    assert "review 0.8100" in detail.content.decode()


@pytest.mark.parametrize("change", ["deactivated", "deleted"])
def test_a_guard_cannot_admit_a_person_who_lost_admission_while_the_review_waited(in_review, guard, change):
    person = in_review.person
    if change == "deactivated":
        person.is_active = False
        person.save(update_fields=["is_active"])
    else:
        CheckIn.objects.filter(pk=in_review.pk).update(person=None)  # erased or deleted meanwhile

    response = guard.post(decide_url(in_review), {"decision": "admit"}, follow=True)

    in_review.refresh_from_db()
    reason = "inactive_person" if change == "deactivated" else "unknown_person"
    assert (in_review.status, in_review.decision, in_review.reason, in_review.reviewed_by) == (
        "decided", 0, reason, "gate-guard")
    [decided] = entries(in_review, "decision")
    assert decided.detail["guard_decision"] == "admit"
    assert decided.detail["superseded"] == {"guard_decision": "admit", "refused_because": reason}
    assert "may no longer pass here" in response.content.decode()


def test_the_queue_never_offers_an_overdue_review_and_ends_it(in_review, device, band_model, guard):
    fresh = checkin_scoring(0.7, device=device, fake=band_model)
    overdue(in_review)

    page = guard.get(reverse(QUEUE)).content.decode()

    assert f"review-{in_review.pk}" not in page and f"review-{fresh.pk}" in page
    in_review.refresh_from_db()
    assert in_review.reason == "review_timeout"


def test_the_sweep_command_for_cron_ends_overdue_reviews(in_review):
    import io

    from django.core.management import call_command

    overdue(in_review)
    out = io.StringIO()
    call_command("sweep_checkins", stdout=out)
    assert f"1 overdue review(s) refused review_timeout [{in_review.pk}]" in out.getvalue()
    in_review.refresh_from_db()
    assert in_review.reason == "review_timeout"
