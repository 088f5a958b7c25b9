"""Worker: claim check-ins, verify their faces, decide. Idempotent.

A claim is a conditional UPDATE: only one worker moves a row from pending to processing. A
redelivered task (``reclaim``, after a worker died) or a row stuck past the timeout may be claimed
again; ``checkin_decide`` is conditional too, so a row is never decided twice.

Rush hour (issue 12): when other check-ins are waiting, the worker that claims one also claims up to
``CHECKIN_BATCH_SIZE - 1`` of them, oldest first, and runs their face work together (one detector call
for the coarse search of same-sized frames, one network call for the embeddings: cheaper per frame,
bench/README.md). Every rule before and after the face work runs per check-in exactly as for one
alone. The tasks queued for the rows taken along find them claimed and return. If the worker dies
mid-batch, those rows stay "processing" until the stuck-check-in sweep re-queues them
(``CHECKIN_STUCK_AFTER_SECONDS``): decided late, never lost, never twice.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from verification import selectors
from verification.models import CheckIn, Person, ReferenceImage
from verification.services import lockouts, probe_faces, queueing, reembedding, replays, reviews, thresholds
from verification.services.access import access_check
from verification.services.checkins import TRANSIENT_ERRORS, _ms_since, checkin_decide, checkin_fail, checkin_release

logger = logging.getLogger(__name__)

Reason = CheckIn.Reason


@dataclass
class _FaceWork:
    """A claimed check-in that passed every rule before the face work, with what the rest needs."""

    checkin_id: int
    checkin: CheckIn
    person: Person
    references: list[ReferenceImage]
    info: Any  # verification.inference.ModelInfo, thresholds applied
    verdict: dict[str, Any]
    timings: dict[str, float]
    started: float
    snapshot: bytes


def checkin_process(*, checkin_id: int, reclaim: bool = False) -> CheckIn | None:
    """Claim check-in ``checkin_id`` (and, under load, others waiting), verify, decide. Idempotent.

    Returns the row as it stands afterwards. Errors processing this check-in propagate (the task
    retries transient ones); those of a row taken along are handled here, as its own task would.
    """
    now = timezone.now()
    if not _claim(checkin_id, now=now, reclaim=reclaim):
        return CheckIn.objects.filter(pk=checkin_id).first()
    others = _claim_waiting(exclude=checkin_id, limit=settings.CHECKIN_BATCH_SIZE - 1, now=now)
    try:
        own = _prepare(checkin_id, now=now)
        taken_along = [_guarded(other, lambda other=other: _prepare(other, now=now)) for other in others]
        work = [item for item in [own, *taken_along] if isinstance(item, _FaceWork)]
        faces = _faces(work)
    except BaseException:
        _hand_back_quietly(others)  # only those still processing go back: decided ones stay decided
        raise
    own_face = None
    for item, face in zip(work, faces):
        if item.checkin_id == checkin_id:
            own_face = face
        else:  # the rows taken along first, so an error on this one cannot strand them
            _guarded(item.checkin_id, lambda item=item, face=face: _finish(item, face))
    return _finish(own, own_face) if isinstance(own, _FaceWork) else own


def _claim(checkin_id: int, *, now: datetime, reclaim: bool = False) -> bool:
    stale_before = now - timedelta(seconds=settings.CHECKIN_STUCK_AFTER_SECONDS)
    claimable = Q(status=CheckIn.Status.PENDING) | Q(status=CheckIn.Status.PROCESSING, started_at__lt=stale_before)
    if reclaim:
        claimable |= Q(status=CheckIn.Status.PROCESSING)
    return bool(
        CheckIn.objects.filter(Q(pk=checkin_id) & claimable).update(
            status=CheckIn.Status.PROCESSING, started_at=now, attempts=F("attempts") + 1, updated_at=now
        )
    )


def _claim_waiting(*, exclude: int, limit: int, now: datetime) -> list[int]:
    """Claim up to ``limit`` other check-ins waiting in the queue, oldest first; another worker may win some."""
    if limit <= 0:
        return []
    waiting = (
        CheckIn.objects.filter(status=CheckIn.Status.PENDING, queued_at__isnull=False)
        .exclude(pk=exclude)
        .order_by("queued_at", "pk")
        .values_list("pk", flat=True)[: 2 * limit]
    )
    claimed = []
    for candidate in waiting:
        if _claim(candidate, now=now):
            claimed.append(candidate)
            if len(claimed) == limit:
                break
    return claimed


def _hand_back(checkin_ids: list[int]) -> None:
    """Return rows taken along to the queue (this worker cannot process them now)."""
    for checkin_id in checkin_ids:
        if checkin_release(checkin_id=checkin_id, error="handed back: the batch it was taken into failed"):
            queueing.enqueue("checkin_process_task", checkin_id)


def _hand_back_quietly(checkin_ids: list[int]) -> None:
    """:func:`_hand_back` while another error propagates: a database that is gone must not hide it (the
    stuck-check-in sweep re-queues what could not be handed back)."""
    try:
        _hand_back(checkin_ids)
    except Exception:  # noqa: BLE001 - the original error is what the task must see
        logger.exception("could not hand back check-ins %s; the sweep will re-queue them", checkin_ids)


def _guarded(checkin_id: int, step: Any) -> Any:
    """Run ``step`` for a row taken along: a transient error hands it back to the queue, any other
    fails it, as its own task would; the rest of the batch goes on."""
    try:
        return step()
    except (*TRANSIENT_ERRORS, SoftTimeLimitExceeded) as exc:
        logger.warning("check-in %s taken into a batch hit %r: handed back to the queue", checkin_id, exc)
        _hand_back([checkin_id])
    except Exception as exc:  # noqa: BLE001 - one row's bug must not decide its neighbours
        logger.exception("check-in %s taken into a batch failed permanently", checkin_id)
        checkin_fail(checkin_id=checkin_id, reason=Reason.PROCESSING_ERROR, error=repr(exc))
    return CheckIn.objects.filter(pk=checkin_id).first()


def _prepare(checkin_id: int, *, now: datetime) -> _FaceWork | CheckIn:
    """Every rule before the face work, for a claimed row: the row decided (or failed), or its face work."""
    from verification import inference  # worker-only: keeps the web process's imports light

    checkin = CheckIn.objects.select_related("device").get(pk=checkin_id)
    if checkin.attempts > settings.CHECKIN_MAX_ATTEMPTS:
        checkin_fail(checkin_id=checkin_id, reason=Reason.PROCESSING_ERROR, error="too many attempts")
        return CheckIn.objects.get(pk=checkin_id)

    started = time.perf_counter()
    timings: dict[str, float] = {}
    if checkin.queued_at is not None:
        timings["queue_ms"] = round((now - checkin.queued_at).total_seconds() * 1000.0, 3)
    # The model's thresholds, or the site's own for this model version (manage.py calibrate --apply).
    info = thresholds.thresholds_effective(info=inference.model_info())
    verdict: dict[str, Any] = {
        "threshold": info.threshold, "model_version": info.version, "threshold_source": info.threshold_source,
    }

    person = selectors.person_by_external_id(external_id=checkin.claimed_external_id)
    # Revoked after it queued this check-in: refused before anything else (issue 9, item 4).
    if checkin.device.revoked_at is not None:
        return _decide_zero(checkin_id, Reason.DEVICE_REVOKED, person, timings, started, verdict)
    # Locked out (too many recent refusals): refused before any face work, so trying more faces
    # during a lockout teaches nothing. A shortcut only: checkin_decide checks again under the lock.
    if lockouts.lockout_blocking(checkin=checkin, at=now) is not None:
        return _decide_zero(checkin_id, Reason.LOCKED_OUT, person, timings, started, verdict)
    # The same bytes again (any device, any time): refused before any face work (issue 9, item 7).
    replay = replays.replay_of_bytes(checkin=checkin)
    if replay is not None:
        return _decide_zero(checkin_id, Reason.REPLAYED, person, timings, started, verdict, replay.detail())
    if person is None:
        return _decide_zero(checkin_id, Reason.UNKNOWN_PERSON, None, timings, started, verdict)
    if not selectors.person_is_admitted(person=person, at=checkin.created_at):
        return _decide_zero(checkin_id, Reason.INACTIVE_PERSON, person, timings, started, verdict)
    # Access rights at the time of the request, as the rules stand now (checkin_submit refused most
    # already; this catches rights withdrawn while the check-in waited): before any face work.
    rights = access_check(person=person, device=checkin.device, at=checkin.created_at)
    if not rights.allowed:
        return _decide_zero(checkin_id, rights.reason, person, timings, started, verdict, rights.audit_detail())
    # Only embeddings of this worker's model version are scored; stale ones are re-embedded first.
    references, stale_left = reembedding.references_refresh(
        person=person, model_version=info.version, timings=timings
    )
    # Fewer ready photos than the site asks for (ENROLMENT_MIN_REFERENCES): not scored at all.
    if len(references) < settings.ENROLMENT_MIN_REFERENCES:
        reason = Reason.REFERENCES_STALE if stale_left else Reason.NO_REFERENCES
        return _decide_zero(checkin_id, reason, person, timings, started, verdict)
    try:
        with checkin.snapshot.open("rb") as handle:
            snapshot = handle.read()
    except (FileNotFoundError, ValueError):
        checkin_fail(checkin_id=checkin_id, reason=Reason.SNAPSHOT_MISSING, error="snapshot file missing")
        return CheckIn.objects.get(pk=checkin_id)
    return _FaceWork(checkin_id, checkin, person, references, info, verdict, timings, started, snapshot)


def _faces(work: list[_FaceWork]) -> list[Any]:
    """Each work item's ``FaceEmbedding`` or ``FaceRejected``: one at a time alone, together in a batch."""
    from verification import inference

    if len(work) == 1:
        try:
            return [inference.embed_face(work[0].snapshot)]
        except inference.FaceRejected as rejected:
            return [rejected]
    return inference.embed_faces([item.snapshot for item in work])


def _finish(work: _FaceWork, face: Any) -> CheckIn:
    """Every rule after the face work, and the decision."""
    from verification import inference

    checkin_id, person, references, timings, verdict = (
        work.checkin_id, work.person, work.references, work.timings, work.verdict
    )
    if isinstance(face, inference.FaceRejected):
        timings.update(face.timings)
        return _decide_zero(checkin_id, face.reason, person, timings, work.started, verdict)
    timings.update(face.timings)
    probe_faces.probe_face_store(checkin_id=checkin_id, crop=face.crop)  # shown on the audit entry's page
    probe = replays.embedding_bytes(face.embedding)
    # A near-duplicate of a recent probe of the same claimed person: a copy, not a camera frame.
    replay = replays.replay_of_probe(checkin=work.checkin, embedding=face.embedding, model_version=work.info.version)
    if replay is not None:
        timings["process_ms"] = _ms_since(work.started)
        checkin_decide(
            checkin_id=checkin_id, decision=0, reason=Reason.REPLAYED, person=person, timings=timings,
            probe_embedding=probe, audit_detail=replay.detail(), **verdict,
        )
        return CheckIn.objects.get(pk=checkin_id)
    matrix = selectors.embeddings_matrix(references)
    scores, timings["score_ms"] = inference.score(face.embedding, matrix)
    # One score over ALL the person's references, never the best one: taking the best of k references
    # gives a stranger k chances (siamese-lfw-1.0.0, LFW fold-8 people, 3 references: best-of 18.3 % of
    # strangers in, mean 5.6 %; bench/reference_aggregation.py). The model's rule says how: the mean of
    # the k scores, or (from siamese-lfw-3.0.1) the score against the mean of the k embeddings, which refuses
    # fewer genuine people at the same FAR (ml.operating_point). The threshold is the one calibrated for
    # this many references under that rule at the model's target FAR.
    decision_score = inference.decision_score(face.embedding, matrix, scores)
    best = int(scores.argmax())  # the closest reference, shown beside the snapshot in the audit log
    verdict["threshold"] = work.info.threshold_for(len(references))
    # The review band below it (None: REVIEW_BAND off or no band calibrated): a guard decides there.
    verdict["review_threshold"] = reviews.review_threshold(info=work.info, references=len(references))
    band = reviews.band_verdict(score=decision_score, **{k: verdict[k] for k in ("threshold", "review_threshold")})
    decision = 1 if band == "admit" else 0
    timings["process_ms"] = _ms_since(work.started)
    # Every reference's score, for the audit entry's page (issue 11, item 2), and the rule that made one of them.
    reference_scores = [
        {"reference_id": reference.pk, "score": round(float(value), 6)} for reference, value in zip(references, scores)
    ]
    if band == reviews.MODEL_VERDICT_REVIEW:
        reviews.checkin_review_open(
            checkin_id=checkin_id, person=person, score=decision_score, best_reference_id=references[best].pk,
            timings=timings, probe_embedding=probe, reference_scores=reference_scores,
            decision_rule=work.info.rule, **verdict,
        )
        return CheckIn.objects.get(pk=checkin_id)
    checkin_decide(
        checkin_id=checkin_id,
        decision=decision,
        reason="" if decision else Reason.NO_MATCH,
        person=person,
        score=decision_score,
        best_reference_id=references[best].pk,
        timings=timings,
        probe_embedding=probe,
        audit_detail={"reference_scores": reference_scores, "decision_rule": work.info.rule},
        **verdict,
    )
    return CheckIn.objects.get(pk=checkin_id)


def _decide_zero(
    checkin_id: int,
    reason: str,
    person: Person | None,
    timings: dict[str, float],
    started: float,
    verdict: dict[str, Any],
    audit_detail: dict[str, Any] | None = None,
) -> CheckIn:
    timings["process_ms"] = _ms_since(started)
    checkin_decide(
        checkin_id=checkin_id, decision=0, reason=reason, person=person, timings=timings, audit_detail=audit_detail,
        **verdict,
    )
    return CheckIn.objects.get(pk=checkin_id)
