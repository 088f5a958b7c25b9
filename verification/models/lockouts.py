"""Lockouts after repeated refusals."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from verification import roles
from verification.models.base import (
    TimeStamped,
)


class Lockout(TimeStamped):
    """Attempt limiting (NIST SP 800-53 AC-7): a claimed person or a device refused for a while.

    Active while ``unlocked_at`` is empty and ``locked_until`` is in the future; an operator's unlock
    or the passing of ``locked_until`` ends it. Rows are kept as history.
    """

    class Scope(models.TextChoices):
        PERSON = "person", "Claimed person"
        DEVICE = "device", "Device"

    scope = models.CharField(max_length=8, choices=Scope.choices)
    # The claimed external ID (person scope) or the device id as text (device scope).
    key = models.CharField(max_length=64)
    # Shown in the admin: the device's name, or the claimed ID again.
    label = models.CharField(max_length=200, blank=True, default="")
    failures = models.PositiveIntegerField(help_text="Failed decisions in the window that triggered it.")
    # 1 for a first lockout; n for the n-th in a row (each began within LOCKOUT_ESCALATION_SECONDS of the
    # previous one's end): it lasts LOCKOUT_SECONDS * 2^(n-1), at most LOCKOUT_MAX_SECONDS.
    level = models.PositiveSmallIntegerField(default=1)
    locked_until = models.DateTimeField()
    unlocked_at = models.DateTimeField(null=True, blank=True)
    unlocked_by = models.CharField(max_length=150, blank=True, default="")

    class Meta:
        ordering = ["-created_at"]
        permissions = roles.model_permissions("lockout")
        indexes = [
            # lockout_active / lockout_note_failure: "latest lockout of (scope, key)".
            models.Index(fields=["scope", "key", "created_at"], name="lockout_scope_key_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                name="lockout_unlock_has_time", condition=Q(unlocked_by="") | Q(unlocked_at__isnull=False)
            ),
        ]

    def __str__(self) -> str:
        return f"Lockout of {self.scope} {self.label or self.key}"

    def ends_at(self):  # noqa: ANN201 - datetime
        return self.unlocked_at or self.locked_until


class LockoutSubject(TimeStamped):
    """One row per claimed person / device ever refused: the row a deciding transaction locks.

    ``checkin_decide`` locks (SELECT ... FOR UPDATE) the rows of its check-in's claimed person and
    device before it reads the lockouts in force and counts refusals, so two workers deciding attempts
    of the same person or device do it one after the other (issue 9, item 5).
    """

    scope = models.CharField(max_length=8, choices=Lockout.Scope.choices)
    key = models.CharField(max_length=64)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["scope", "key"], name="lockout_subject_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.scope} {self.key}"
