"""Door devices."""

from __future__ import annotations

from django.db import models

from verification import roles
from verification.models.access import Door
from verification.models.base import (
    TimeStamped,
)


class Device(TimeStamped):
    name = models.CharField(max_length=100, unique=True)
    # SHA-256 of the token: tokens are 256-bit random strings, so a slow hash adds nothing.
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    token_prefix = models.CharField(max_length=8, editable=False, help_text="First characters, to tell tokens apart.")
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    # When the current token was issued: DEVICE_TOKEN_MAX_AGE_DAYS counts from here.
    token_issued_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_seen_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Opt-in signed requests (issue 9, item 7): with a secret, every API request of this device must carry
    # an HMAC-SHA256 signature (verification/api/signatures.py). HMAC needs the secret itself, so it is
    # stored as issued (not encrypted at rest: docs/SECURITY.md); empty = the device does not sign.
    signing_secret = models.CharField(max_length=64, blank=True, default="", editable=False)
    # Where the device stands (issue 11, item 1): its check-ins need access to the door's zone. No door:
    # DEVICE_WITHOUT_DOOR decides (services/access.py). PROTECT: a door with devices cannot be deleted.
    door = models.ForeignKey(Door, on_delete=models.PROTECT, null=True, blank=True, related_name="devices")

    class Meta:
        ordering = ["name"]
        permissions = roles.model_permissions("device")

    def __str__(self) -> str:
        return self.name

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def signs_requests(self) -> bool:
        return bool(self.signing_secret)
