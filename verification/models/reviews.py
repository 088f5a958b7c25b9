"""The review queue's screen in the admin: check-ins in the review band, waiting for a guard."""

from __future__ import annotations

from verification.models.checkins import CheckIn


class CheckInReview(CheckIn):
    """A proxy (no table of its own) so that the review queue is a screen of its own in the admin
    (``admin/reviews.py``), seen by whoever holds ``review_checkin`` (``verification.roles``). It adds no
    permissions: the queue asks for ``review_checkin`` on ``CheckIn``."""

    class Meta:
        proxy = True
        default_permissions = ()
        verbose_name = "check-in waiting for a guard"
        verbose_name_plural = "review queue"
