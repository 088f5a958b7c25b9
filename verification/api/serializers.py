from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.core.validators import RegexValidator
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.reverse import reverse

from verification import selectors
from verification.models import CheckIn

MAX_WAIT_SECONDS = 10
STATUS_HELP = (
    "pending / processing: not decided yet; review: the score fell in the review band and a guard decides "
    "(show \"please wait\" and keep polling `url`); decided: see `decision`; failed: could not be processed."
)


@extend_schema_field({"type": "string", "format": "binary", "minLength": 1})
class SnapshotField(serializers.FileField):
    """The uploaded photo. An empty file passes the field so the view can answer it with its own code
    (``empty_file``); the schema says it is refused all the same."""


class CheckInSubmitSerializer(serializers.Serializer):
    snapshot = SnapshotField(allow_empty_file=True, help_text="JPEG/PNG photo from the door camera.")
    person = serializers.CharField(
        max_length=64, trim_whitespace=True, help_text="Claimed person's external ID.",
        # Whitespace alone is trimmed to blank and refused; saying so lets the schema say so too.
        validators=[RegexValidator(r"\S", message="This field may not be blank.")],
    )
    wait = serializers.FloatField(
        required=False,
        default=0,
        min_value=0,
        max_value=MAX_WAIT_SECONDS,
        help_text="Seconds to wait for the decision (0-10); 0 answers 202 at once.",
    )


class CheckInSerializer(serializers.ModelSerializer):
    """What a door device is told by default (``CHECKIN_RESPONSE_DETAIL=coarse``, issue 9, item 6)."""

    decision = serializers.IntegerField(allow_null=True, help_text="1 admitted, 0 refused, null undecided.")
    reason = serializers.SerializerMethodField(
        help_text=(
            "Why a 0: `not_recognised` (every refusal about the claimed person or the face), `locked_out` "
            "(too many recent refusals), or `error` for a failed check-in; empty otherwise. The exact reason, "
            "score, threshold and timings are in the audit log (and in the answer with "
            "CHECKIN_RESPONSE_DETAIL=full)."
        )
    )
    url = serializers.SerializerMethodField()

    class Meta:
        model = CheckIn
        fields = ["id", "url", "status", "decision", "reason"]
        read_only_fields = fields
        extra_kwargs = {"status": {"help_text": STATUS_HELP}}

    def get_reason(self, obj: CheckIn) -> str:
        return selectors.checkin_device_reason(checkin=obj)

    def get_url(self, obj: CheckIn) -> str:
        return reverse("api-checkin-detail", kwargs={"pk": obj.pk}, request=self.context.get("request"))


class CheckInDetailSerializer(CheckInSerializer):
    """Everything about the check-in, for integrators (``CHECKIN_RESPONSE_DETAIL=full``)."""

    person = serializers.CharField(source="claimed_external_id", help_text="Claimed person's external ID.")
    device = serializers.CharField(source="device.name")
    reason = serializers.CharField(help_text="The exact reason of a 0 (see the 200 description); empty otherwise.")
    locked_until = serializers.SerializerMethodField(
        help_text="For a `locked_out` refusal: when the lockout that refused it ends (or ended, if unlocked "
        "early); null otherwise."
    )

    class Meta:
        model = CheckIn
        fields = [
            "id", "url", "status", "decision", "score", "threshold", "review_threshold", "reason", "model_version",
            "person", "device", "created_at", "decided_at", "timings", "locked_until",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "score": {"help_text": "Mean Siamese score (P(same person)) over the person's reference photos; "
                                   "admitted when it reaches `threshold`. Null when no face was compared."},
            "threshold": {"help_text": "The model's calibrated threshold used for this decision."},
            "review_threshold": {"help_text": "The review band's lower edge in force (null: band off): between it "
                                              "and `threshold` a guard decides."},
            "status": {"help_text": STATUS_HELP},
        }

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_locked_until(self, obj: CheckIn) -> datetime | None:
        if obj.reason != CheckIn.Reason.LOCKED_OUT:
            return None
        lockout = selectors.checkin_lockout(checkin=obj)
        return lockout.ends_at() if lockout is not None else None


def checkin_response_serializer() -> type[CheckInSerializer]:
    """The answer's serializer, by ``CHECKIN_RESPONSE_DETAIL``."""
    return CheckInDetailSerializer if settings.CHECKIN_RESPONSE_DETAIL == "full" else CheckInSerializer
