"""The review queue (issue 10, item 1): check-ins in the review band, oldest first, for a guard to admit
or refuse.

Seen by whoever holds ``review_checkin`` (the Guard and Security officer roles, ``verification.roles``);
anyone else gets 403. Each row shows the snapshot beside the claimed person's reference photos (each
only with its own image permission), the score and both thresholds to three decimals, how long it has
waited and how long is left; the page reloads itself every ``REFRESH_SECONDS``. Admit and Refuse post
(with CSRF) to ``decide``, which calls ``services.checkin_review_decide``: a conditional update, so when
another guard (or the timeout) came first nothing changes and the guard is told who or what decided.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from verification import roles, selectors, services
from verification.admin.common import may_view_reference_photos, may_view_snapshots, thumbnail
from verification.formatting import score_text
from verification.models import CheckIn, CheckInReview
from verification.services import thresholds

REFRESH_SECONDS = 5
IMAGE_PX = 200
DECISIONS = {"admit": 1, "refuse": 0}


def may_review(request: HttpRequest) -> bool:
    return request.user.has_perm(roles.perm(roles.REVIEW_CHECKINS))


@admin.register(CheckInReview)
class ReviewQueueAdmin(admin.ModelAdmin):
    """Not a list of rows to edit: one page (the changelist URL) and one POST per decision."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return may_review(request)

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:  # noqa: ANN001
        return may_review(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:  # noqa: ANN001
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:  # noqa: ANN001
        return False

    def get_urls(self):  # noqa: ANN201
        decide = path("<int:checkin_id>/decide/", self.admin_site.admin_view(self.decide_view),
                      name="verification_checkinreview_decide")
        queue = path("", self.admin_site.admin_view(self.changelist_view), name="verification_checkinreview_changelist")
        # Only the queue and the decision: no per-row change page, history or delete.
        return [decide, queue]

    def changelist_view(self, request: HttpRequest, extra_context=None) -> HttpResponse:  # noqa: ANN001
        if not may_review(request):
            raise PermissionDenied
        # Overdue reviews end here too (as at the door's poll and in beat's sweep): the queue never offers
        # a check-in whose door has been, or will be, told review_timeout.
        services.checkin_reviews_expire()
        now = timezone.now()
        show_snapshots, show_references = may_view_snapshots(request), may_view_reference_photos(request)
        rows = [self._row(checkin, now=now, show_snapshots=show_snapshots, show_references=show_references)
                for checkin in selectors.reviews_waiting()]
        context = {
            **self.admin_site.each_context(request),
            "title": "Review queue",
            "opts": self.model._meta,
            "rows": rows,
            "bands": _bands(thresholds.thresholds_table()),
            "refresh_seconds": REFRESH_SECONDS,
            "show_snapshots": show_snapshots,
            "show_references": show_references,
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/verification/review_queue.html", context)

    @staticmethod
    def _row(checkin: CheckIn, *, now, show_snapshots: bool, show_references: bool) -> dict:  # noqa: ANN001
        references = []
        if show_references and checkin.person_id:
            references = [
                {"image": thumbnail(ref.image, size=IMAGE_PX, alt=f"reference {ref.pk}"),
                 "closest": ref.pk == checkin.best_reference_id}
                for ref in selectors.references_ready(person=checkin.person, model_version=checkin.model_version)
            ]
        return {
            "checkin": checkin,
            "person": str(checkin.person) if checkin.person_id else checkin.claimed_external_id,
            "snapshot": thumbnail(checkin.snapshot, size=IMAGE_PX, alt="snapshot") if show_snapshots else "",
            "references": references,
            "waited_seconds": max(0, int((now - checkin.review_started_at).total_seconds())),
            "left_seconds": max(0, int((checkin.review_expires_at - now).total_seconds())),
        }

    def decide_view(self, request: HttpRequest, checkin_id: int) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not may_review(request):
            raise PermissionDenied
        choice = request.POST.get("decision", "")
        if choice not in DECISIONS:
            return HttpResponseBadRequest("decision must be admit or refuse")
        guard = request.user.get_username()
        decided = services.checkin_review_decide(checkin_id=checkin_id, decision=DECISIONS[choice], guard=guard)
        checkin = CheckIn.objects.filter(pk=checkin_id).first()
        if decided and checkin.decision != DECISIONS[choice]:
            messages.warning(request, f"Check-in #{checkin_id} ({checkin.claimed_external_id}) refused "
                                      f"{checkin.reason}: the person may no longer pass here (changed while the "
                                      "check-in waited), whatever the face shows.")
        elif decided:
            verb = "admitted" if choice == "admit" else "refused"
            messages.success(request, f"Check-in #{checkin_id} ({checkin.claimed_external_id}) {verb}; the door "
                                      "gets the decision at its next poll.")
        else:
            messages.warning(request, _not_decided_message(checkin_id, checkin))
        return HttpResponseRedirect(reverse("admin:verification_checkinreview_changelist"))


def _percent(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.2f} %"


def _bands(table: thresholds.BandTable) -> dict:
    """The thresholds in force, to 3 decimals, with the expected FAR / FRR beside each."""
    return {
        "model_version": table.model_version, "source": table.source, "problem": table.problem,
        "target_far": table.target_far, "review_far": table.review_far,
        "rows": [{
            "references": row.references,
            "threshold": score_text(row.threshold), "far": _percent(row.far), "frr": _percent(row.frr),
            "review_threshold": score_text(row.review_threshold),
            "review_far": _percent(row.review_far), "review_frr": _percent(row.review_frr),
        } for row in table.rows],
    }


def _not_decided_message(checkin_id: int, checkin: CheckIn | None) -> str:
    """Why a guard's decision changed nothing: someone else or the deadline came first."""
    mine = "Your decision was not recorded."
    if checkin is None:
        return f"Check-in #{checkin_id} does not exist. {mine}"
    if checkin.reason == CheckIn.Reason.REVIEW_TIMEOUT:
        return (f"Check-in #{checkin_id} ({checkin.claimed_external_id}) had already timed out: no guard answered "
                f"within its deadline, so it was refused review_timeout. {mine}")
    if checkin.reviewed_by:
        verb = "admitted" if checkin.decision == 1 else "refused"
        at = timezone.localtime(checkin.decided_at).strftime("%H:%M:%S")
        return (f"Check-in #{checkin_id} ({checkin.claimed_external_id}) was already {verb} by {checkin.reviewed_by} "
                f"at {at}. {mine}")
    return f"Check-in #{checkin_id} is not waiting for a guard (status {checkin.status}). {mine}"
