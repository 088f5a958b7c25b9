"""The admin's front page (issue 11, item 2): the dashboard's numbers on seeded rows, who sees which part,
the product's name in the header, model names as people say them, and a "View site" that leads somewhere."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from verification import roles, selectors, services
from verification.apps import PRODUCT_NAME
from verification.models import CheckIn, Device, Lockout, ReferenceImage, WorkerHeartbeat
from verification.monitoring import readiness

pytestmark = pytest.mark.django_db


def persona(django_user_model, role: roles.Role) -> Client:
    user = django_user_model.objects.create_user(role.name.lower().replace(" ", "-"), password="pw-not-used-123",
                                                 is_staff=True)
    user.groups.add(Group.objects.get(name=role.name))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def door(db) -> Device:
    return Device.objects.create(name="front-door", token_hash="0" * 64, token_prefix="00000000")


def seed(device: Device, *, at, status: str = CheckIn.Status.DECIDED, decision: int | None = None,
         reason: str = "") -> CheckIn:
    """A check-in row in the given state, received at ``at`` (written directly: these tests count rows)."""
    checkin = CheckIn.objects.create(device=device, claimed_external_id="B-1")
    fields = {"status": status, "created_at": at, "reason": reason}
    if status == CheckIn.Status.DECIDED:
        fields |= {"decision": decision, "decided_at": at + timedelta(seconds=1)}
    if status == CheckIn.Status.REVIEW:
        fields |= {"score": 0.6, "threshold": 0.7, "review_threshold": 0.5, "review_started_at": at,
                   "review_expires_at": at + timedelta(minutes=2)}
    CheckIn.objects.filter(pk=checkin.pk).update(**fields)
    return checkin


@pytest.fixture
def seeded_day(door):
    """Today: 3 admitted, 2 no_match, 1 unknown_person, 1 failed, 1 pending, 1 in review. Yesterday: 2 admitted."""
    now = timezone.now()
    since, _ = selectors.local_day(at=now)
    today = since + (now - since) / 2
    for _ in range(3):
        seed(door, at=today, decision=1)
    for _ in range(2):
        seed(door, at=today, decision=0, reason="no_match")
    seed(door, at=today, decision=0, reason="unknown_person")
    seed(door, at=today, status=CheckIn.Status.FAILED, reason="processing_error")
    seed(door, at=today, status=CheckIn.Status.PENDING)
    seed(door, at=today, status=CheckIn.Status.REVIEW)
    for _ in range(2):
        seed(door, at=since - timedelta(hours=1), decision=1)
    return since


def figures(dashboard, section: str) -> dict[str, object]:
    return {figure.label: figure.value for figure in getattr(dashboard, section)}


def test_dashboard_counts_todays_checkins_by_outcome_and_refusals_by_reason(staff_client, seeded_day):
    response = staff_client.get(reverse("admin:index"))
    assert response.status_code == 200
    dashboard = response.context["dashboard"]
    assert figures(dashboard, "today") == {
        "Check-ins": 9, "Admitted": 3, "Refused": 3, "Failed": 1, "Not decided yet": 2,
    }
    assert figures(dashboard, "refused") == {"Face does not match": 2, "Unknown person": 1}
    assert figures(dashboard, "attention")["Reviews waiting"] == 1
    content = response.content.decode()
    assert "Check-ins today" in content and "Face does not match" in content


def test_dashboard_figures_link_to_the_list_they_count(staff_client, seeded_day):
    dashboard = staff_client.get(reverse("admin:index")).context["dashboard"]
    refused = next(figure for figure in dashboard.today if figure.label == "Refused")
    listed = staff_client.get(refused.url)
    assert listed.status_code == 200
    assert listed.context["cl"].result_count == 3  # today's refusals only, not yesterday's rows
    no_match = next(figure for figure in dashboard.refused if figure.note == "no_match")
    assert staff_client.get(no_match.url).context["cl"].result_count == 2
    reviews = next(figure for figure in dashboard.attention if figure.label == "Reviews waiting")
    assert reviews.url == reverse("admin:verification_checkinreview_changelist")  # the queue itself
    assert staff_client.get(reviews.url).status_code == 200


def test_reviews_waiting_links_the_checkin_list_for_those_who_do_not_review(django_user_model, seeded_day):
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user("viewer", password="pw-not-used-123", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_checkin"))
    client = Client()
    client.force_login(user)
    dashboard = client.get(reverse("admin:index")).context["dashboard"]
    reviews = next(figure for figure in dashboard.attention if figure.label == "Reviews waiting")
    assert client.get(reviews.url).context["cl"].result_count == 1


def test_dashboard_shows_lockouts_in_force_with_their_end(staff_client, door):
    until = timezone.now() + timedelta(minutes=10)
    Lockout.objects.create(scope=Lockout.Scope.PERSON, key="B-1001", label="B-1001", failures=5, locked_until=until)
    Lockout.objects.create(scope=Lockout.Scope.PERSON, key="B-1002", label="B-1002", failures=5,
                           locked_until=timezone.now() - timedelta(minutes=1))  # over
    dashboard = staff_client.get(reverse("admin:index")).context["dashboard"]
    assert figures(dashboard, "attention")["Locked out now"] == 1
    (lockout,) = dashboard.lockouts
    assert "B-1001" in lockout.label
    assert lockout.value == f"until {timezone.localtime(until):%Y-%m-%d %H:%M:%S} {timezone.localtime(until).tzname()}"


def test_dashboard_counts_photos_waiting_for_the_face_check(staff_client, person, monkeypatch):
    monkeypatch.setattr("verification.services.queueing.enqueue", lambda name, object_id: True)
    from tests.conftest import upload

    services.reference_add(person=person, image_file=upload())
    services.reference_add(person=person, image_file=upload())
    assert ReferenceImage.objects.filter(status="pending").count() == 2
    dashboard = staff_client.get(reverse("admin:index")).context["dashboard"]
    assert figures(dashboard, "attention")["Photos waiting for the face check"] == 2


def test_dashboard_reports_queue_depth_and_each_fresh_worker(staff_client, settings, monkeypatch, db):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.CELERY_BROKER_URL = "memory://"
    monkeypatch.setattr(readiness, "broker_queue_depth", lambda: 7)
    services.worker_heartbeat_record(worker="celery@w1:101", model_version="fake-1")
    WorkerHeartbeat.objects.create(worker="celery@gone:1", model_version="fake-1",
                                   beat_at=timezone.now() - timedelta(hours=1))  # stale: not listed
    dashboard = staff_client.get(reverse("admin:index")).context["dashboard"]
    health = figures(dashboard, "health")
    assert health["Task queue"] == 7
    assert health["Workers"] == "ready"
    assert figures(dashboard, "workers") == {"celery@w1:101": "fake-1"}


def test_dashboard_says_when_no_worker_answers_or_the_broker_is_down(staff_client, settings, monkeypatch, db):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.CELERY_BROKER_URL = "memory://"

    def unreachable():
        raise ConnectionError("no broker")

    monkeypatch.setattr(readiness, "broker_queue_depth", unreachable)
    dashboard = staff_client.get(reverse("admin:index")).context["dashboard"]
    health = {figure.label: figure for figure in dashboard.health}
    assert (health["Task queue"].value, health["Task queue"].tone) == ("unreachable", "bad")
    assert (health["Workers"].value, health["Workers"].tone) == ("not ready", "bad")
    assert "no worker answered" in health["Workers"].note


def test_each_role_sees_only_the_dashboard_parts_it_may(django_user_model, seeded_day):
    officer = persona(django_user_model, roles.SECURITY_OFFICER).get(reverse("admin:index")).context["dashboard"]
    assert figures(officer, "today")["Check-ins"] == 9
    assert "Locked out now" in figures(officer, "attention")
    assert "Photos waiting for the face check" not in figures(officer, "attention")

    operator = persona(django_user_model, roles.OPERATOR).get(reverse("admin:index")).context["dashboard"]
    assert operator.today == [] and operator.refused == []
    assert set(figures(operator, "attention")) == {"Photos waiting for the face check"}

    auditor_page = persona(django_user_model, roles.AUDITOR).get(reverse("admin:index"))
    auditor = auditor_page.context["dashboard"]
    assert auditor.today == [] and auditor.attention == [] and auditor.lockouts == []
    assert "Check-ins today" not in auditor_page.content.decode()
    assert figures(auditor, "health")  # queue and workers: every staff user


# --- Names, header, "View site" ---------------------------------------------------------------------


def test_admin_names_the_product_and_the_models_as_people_say_them(staff_client):
    content = staff_client.get(reverse("admin:index")).content.decode()
    assert PRODUCT_NAME in content
    assert ">People<" in content and ">Check-ins<" in content
    assert "Persons" not in content and "Check ins" not in content
    people = staff_client.get(reverse("admin:verification_person_changelist")).content.decode()
    assert "Select person to change" in people and "People" in people


def test_view_site_leads_to_a_page_not_a_404(staff_client, client):
    admin_page = staff_client.get(reverse("admin:index"))
    site_url = admin_page.context["site_url"]
    assert f'href="{site_url}"' in admin_page.content.decode()
    home = client.get(site_url)
    assert home.status_code == 200
    page = home.content.decode()
    assert PRODUCT_NAME in page
    assert reverse("admin:index") in page and reverse("api-docs") in page

