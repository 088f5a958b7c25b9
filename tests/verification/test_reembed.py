"""After a model change: stale references are re-embedded (inline, by the sweep, by the command),
and no check-in is ever scored against another model version's embeddings."""
from __future__ import annotations

import io
from datetime import timedelta

import numpy as np
import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from tests.conftest import upload
from verification import selectors, services, tasks
from verification.models import AuditEntry, CheckIn, ReferenceImage
from verification.services import reembedding

pytestmark = pytest.mark.django_db

# A value the fake model never produces (it embeds everything as 0.5s): marks an old-model embedding.
OLD_VALUE = 9.0


def make_stale(reference: ReferenceImage, version: str = "fake-1") -> None:
    """Pretend ``reference`` was embedded by model ``version`` with an embedding the new model never gives."""
    ReferenceImage.objects.filter(pk=reference.pk).update(
        model_version=version, embedding=np.full(8, OLD_VALUE, dtype="<f4").tobytes(), embedding_dim=8
    )


def add_ready_reference(person, fake_model) -> ReferenceImage:
    reference = services.reference_add(person=person, image_file=upload())
    return services.reference_embed(reference_id=reference.pk)


def submit(device, external_id="B-1001") -> CheckIn:
    return services.checkin_submit(device=device, person_external_id=external_id, snapshot_file=upload())


@pytest.fixture
def scored(fake_model, monkeypatch):
    """Records every matrix of reference embeddings handed to the score function."""
    from verification import inference

    matrices: list[np.ndarray] = []
    real_score = fake_model.score

    def recording_score(probe, references):
        matrices.append(np.array(references, copy=True))
        return real_score(probe, references)

    monkeypatch.setattr(inference, "score", recording_score)
    return matrices


def test_stale_reference_is_re_embedded_by_the_worker_before_the_decision(device, enrolled_person, fake_model, scored):
    reference = enrolled_person.references.get()
    old_crop = reference.face_crop.name
    make_stale(reference, "fake-1")
    fake_model.version = "fake-2"  # the worker now runs model B

    checkin = submit(device)
    services.checkin_process(checkin_id=checkin.pk)

    checkin.refresh_from_db()
    reference.refresh_from_db()
    assert (checkin.status, checkin.decision, checkin.reason) == ("decided", 1, "")
    assert checkin.model_version == "fake-2"
    assert "reembed_ms" in checkin.timings
    assert (reference.status, reference.model_version, reference.reembed_queued_at) == ("ready", "fake-2", None)
    assert not reference.face_crop.storage.exists(old_crop)
    assert len(scored) == 1 and not np.any(scored[0] == OLD_VALUE)
    audit = AuditEntry.objects.get(checkin=checkin)
    assert (audit.decision, audit.model_version) == (1, "fake-2")


def test_score_path_receives_only_embeddings_of_the_workers_model_version(device, enrolled_person, fake_model, scored):
    current = add_ready_reference(enrolled_person, fake_model)
    stale = [add_ready_reference(enrolled_person, fake_model) for _ in range(reembedding.INLINE_REEMBED_LIMIT + 2)]
    for reference in stale:
        make_stale(reference, "fake-0")
    # The first reference (from the fixture) is also current ("fake-1"); the stale ones past the inline
    # limit are left to the sweep and must not be scored.
    scored.clear()  # enrolment scored each new photo against the earlier ones (consistency check)
    checkin = submit(device)
    services.checkin_process(checkin_id=checkin.pk)

    checkin.refresh_from_db()
    assert checkin.status == "decided" and checkin.model_version == "fake-1"
    (matrix,) = scored
    assert not np.any(matrix == OLD_VALUE)
    used = selectors.references_ready(person=enrolled_person, model_version="fake-1")
    assert current in used and matrix.shape[0] == len(used)
    assert ReferenceImage.objects.filter(model_version="fake-0").count() == 2  # beyond the inline limit...
    assert ReferenceImage.objects.filter(model_version="fake-0", reembed_queued_at__isnull=False).count() == 2  # ...queued


def test_references_that_cannot_be_re_embedded_refuse_the_checkin_as_stale(device, enrolled_person, fake_model, scored, monkeypatch):
    make_stale(enrolled_person.references.get(), "fake-1")
    fake_model.version = "fake-2"
    monkeypatch.setattr(services.reembedding, "reference_embed", lambda *, reference_id: 1 / 0)

    checkin = submit(device)
    services.checkin_process(checkin_id=checkin.pk)

    checkin.refresh_from_db()
    assert (checkin.status, checkin.decision, checkin.reason) == ("decided", 0, "references_stale")
    assert checkin.model_version == "fake-2"
    assert scored == []  # never scored against the old embedding
    assert fake_model.calls["embed_face"] == 1  # the enrolment only: the snapshot was not even embedded
    assert AuditEntry.objects.get(checkin=checkin).reason == "references_stale"


def test_reference_rejected_by_the_new_model_leaves_the_person_without_references(device, enrolled_person, fake_model, scored):
    make_stale(enrolled_person.references.get(), "fake-1")
    fake_model.version, fake_model.reject_reason = "fake-2", "no_face"

    checkin = submit(device)
    services.checkin_process(checkin_id=checkin.pk)

    checkin.refresh_from_db()
    reference = enrolled_person.references.get()
    assert (checkin.decision, checkin.reason) == (0, "no_references")
    assert (reference.status, reference.reason, reference.embedding) == ("rejected", "no_face", None)
    assert scored == []


def test_sweep_task_re_embeds_stale_references_and_is_idempotent(enrolled_person, fake_model, django_capture_on_commit_callbacks):
    second = add_ready_reference(enrolled_person, fake_model)
    current = add_ready_reference(enrolled_person, fake_model)
    for reference in (enrolled_person.references.first(), second):
        make_stale(reference, "fake-0")
    embeds_before = fake_model.calls["embed_face"]

    with django_capture_on_commit_callbacks(execute=True):
        queued = tasks.reembed_stale_task.apply().get()
    assert sorted(queued) == sorted(pk for pk in enrolled_person.references.values_list("pk", flat=True) if pk != current.pk)
    assert set(enrolled_person.references.values_list("model_version", flat=True)) == {"fake-1"}
    assert not np.any(selectors.embeddings_matrix(list(enrolled_person.references.all())) == OLD_VALUE)
    assert fake_model.calls["embed_face"] == embeds_before + 2

    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.reembed_stale_task.apply().get() == []
    assert fake_model.calls["embed_face"] == embeds_before + 2


def test_a_reference_is_queued_once_by_two_sweeps_and_again_only_when_its_task_was_lost(enrolled_person, fake_model, settings, monkeypatch):
    queued_tasks = []
    monkeypatch.setattr("verification.services.queueing.enqueue", lambda name, object_id: queued_tasks.append(object_id) or True)
    reference = enrolled_person.references.get()
    make_stale(reference, "fake-0")

    first = services.references_reembed_sweep(batch_size=10)
    second = services.references_reembed_sweep(batch_size=10)  # another worker, before the first task ran
    assert (first, second) == ([reference.pk], [])

    settings.CHECKIN_STUCK_AFTER_SECONDS = 60
    ReferenceImage.objects.filter(pk=reference.pk).update(reembed_queued_at=timezone.now() - timedelta(seconds=120))
    assert services.references_reembed_sweep(batch_size=10) == [reference.pk]


def test_sweep_queues_in_batches(enrolled_person, fake_model, monkeypatch):
    monkeypatch.setattr("verification.services.queueing.enqueue", lambda name, object_id: True)
    for _ in range(2):
        add_ready_reference(enrolled_person, fake_model)
    ReferenceImage.objects.update(model_version="fake-0")
    assert len(services.references_reembed_sweep(batch_size=2)) == 2
    assert len(services.references_reembed_sweep(batch_size=2)) == 1
    assert services.references_reembed_sweep(batch_size=2) == []


def test_redelivered_re_embedding_task_does_not_embed_twice(enrolled_person, fake_model):
    reference = enrolled_person.references.get()
    make_stale(reference, "fake-0")
    tasks.reference_embed_task.apply(args=[reference.pk])
    tasks.reference_embed_task.apply(args=[reference.pk])
    reference.refresh_from_db()
    assert (reference.model_version, reference.attempts) == ("fake-1", 2)  # one enrolment, one re-embedding


def test_re_embedding_that_keeps_failing_marks_the_queued_reference_failed(enrolled_person, fake_model, settings):
    from django.db import OperationalError

    settings.CHECKIN_MAX_ATTEMPTS = 1
    reference = enrolled_person.references.get()
    make_stale(reference, "fake-0")
    ReferenceImage.objects.filter(pk=reference.pk).update(reembed_queued_at=timezone.now())
    fake_model.error = OperationalError("database gone")
    tasks.reference_embed_task.apply(args=[reference.pk])
    reference.refresh_from_db()
    assert (reference.status, reference.reason, reference.embedding) == ("rejected", "processing_error", None)


def test_reembed_references_dry_run_changes_nothing(enrolled_person, fake_model, monkeypatch):
    queued_tasks = []
    monkeypatch.setattr("verification.services.queueing.enqueue", lambda name, object_id: queued_tasks.append(object_id) or True)
    reference = enrolled_person.references.get()
    make_stale(reference, "fake-0")
    before = ReferenceImage.objects.values().get(pk=reference.pk)

    out = io.StringIO()
    call_command("reembed_references", "--dry-run", stdout=out)

    assert "0 of 1 ready reference(s) are embedded by model fake-1" in out.getvalue()
    assert "dry run: 1 reference(s) would be queued" in out.getvalue()
    assert ReferenceImage.objects.values().get(pk=reference.pk) == before
    assert queued_tasks == []


def test_reembed_references_command_re_embeds_stale_references(enrolled_person, fake_model, django_capture_on_commit_callbacks):
    reference = enrolled_person.references.get()
    make_stale(reference, "fake-0")
    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("reembed_references", stdout=out)
    assert "queued 1 reference(s) for re-embedding with model fake-1" in out.getvalue()
    reference.refresh_from_db()
    assert (reference.status, reference.model_version) == ("ready", "fake-1")


def test_admin_shows_re_embedding_progress_and_stale_references(staff_client, enrolled_person, fake_model):
    stale = add_ready_reference(enrolled_person, fake_model)
    make_stale(stale, "fake-0")
    ReferenceImage.objects.filter(pk=stale.pk).update(embedded_at=timezone.now() - timedelta(days=1))

    response = staff_client.get(reverse("admin:verification_person_changelist"))
    content = response.content.decode()
    assert "1 of 2" in content
    assert "1 of 2 ready references on the current model fake-1" in content

    filtered = staff_client.get(reverse("admin:verification_person_changelist"), {"embeddings": "stale"})
    assert enrolled_person.external_id in filtered.content.decode()
    none_current = staff_client.get(reverse("admin:verification_person_changelist"), {"embeddings": "current"})
    assert enrolled_person.external_id not in none_current.content.decode()

    change = staff_client.get(reverse("admin:verification_person_change", args=[enrolled_person.pk]))
    assert "fake-0 (stale: re-embedding by fake-1 pending)" in change.content.decode()


def test_a_full_batch_queues_the_next_sweep_until_nothing_is_stale(enrolled_person, fake_model, settings, django_capture_on_commit_callbacks):
    settings.REEMBED_BATCH_SIZE = 1
    add_ready_reference(enrolled_person, fake_model)
    ReferenceImage.objects.update(model_version="fake-0")
    with django_capture_on_commit_callbacks(execute=True):
        tasks.reembed_stale_task.apply()
    assert set(enrolled_person.references.values_list("model_version", flat=True)) == {"fake-1"}


def test_beat_and_worker_start_up_run_the_re_embedding_sweep(settings, monkeypatch):
    from celery.signals import worker_ready

    assert "verification.tasks.reembed_stale_task" in {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    queued = []
    monkeypatch.setattr(tasks.reembed_stale_task, "delay", lambda: queued.append("sweep"))
    worker_ready.send(sender=None)
    assert queued == ["sweep"]
