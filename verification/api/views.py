"""Check-in endpoints. Input serializer -> service -> output serializer; no rules here."""
from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from verification import selectors, services
from verification.api.serializers import (
    MAX_WAIT_SECONDS,
    CheckInSerializer,
    CheckInSubmitSerializer,
    checkin_response_serializer,
)
from verification.errors import InvalidImage
from verification.models import CheckIn
from verification.services.waits import FINAL_STATUSES
ALLOWED_BODY_FIELDS = {"snapshot", "person", "wait"}
ALLOWED_QUERY_FIELDS = {"wait"}
# Room for the multipart boundaries and the small text fields around the snapshot.
MULTIPART_OVERHEAD_BYTES = 64 * 1024


def _reject_oversized_body(request: Request) -> None:
    """Refuse from the Content-Length header, before Django reads (and spools) a huge body."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    limit = settings.UPLOAD_MAX_BYTES + MULTIPART_OVERHEAD_BYTES
    if length > limit:
        raise InvalidImage(
            f"The request is {length} bytes; the snapshot limit is {settings.UPLOAD_MAX_BYTES}.",
            code="file_too_large",
            detail={"content_length": length, "max_bytes": settings.UPLOAD_MAX_BYTES},
        )


def _reject_unknown_fields(request: Request) -> None:
    unknown_body = sorted(set(request.data.keys()) - ALLOWED_BODY_FIELDS)
    unknown_query = sorted(set(request.query_params.keys()) - ALLOWED_QUERY_FIELDS)
    if unknown_body or unknown_query:
        raise ValidationError({"unknown_fields": unknown_body + unknown_query})


@dataclass(frozen=True)
class _AwaitingDecision:
    """Hung on the provisional answer of a check-in that is not final yet: what ``checkin_create`` waits for."""

    checkin_id: int
    until: float  # time.monotonic() deadline of the request's ``wait``
    answer: Callable[[CheckIn | None], Response]  # the answer from the row given, or as it stands now (None)


class CheckInCreateView(APIView):
    @extend_schema(
        operation_id="checkins_create",
        request={"multipart/form-data": CheckInSubmitSerializer},
        parameters=[OpenApiParameter(
            "wait", {"type": "number", "format": "double", "minimum": 0, "maximum": MAX_WAIT_SECONDS},
            description="Same as the body field `wait` (which wins when both are sent).")],
        responses={
            200: OpenApiResponse(
                CheckInSerializer,
                description=(
                    "Decided (or failed) within `wait`. By default (CHECKIN_RESPONSE_DETAIL=coarse) the answer "
                    "is `id`, `url`, `status`, `decision` and a coarse `reason`: not_recognised (any refusal "
                    "about the claimed person or the face: unknown and inactive IDs look the same as a face "
                    "that does not match), locked_out, or error (failed). With CHECKIN_RESPONSE_DETAIL=full "
                    "(integrators) it also carries `score`, `threshold`, `model_version`, `person`, `device`, "
                    "`created_at`, `decided_at`, `timings`, `locked_until` (when a locked_out refusal's lockout "
                    "ends) and the exact reason: no_match, no_face, face_too_small "
                    "(a face was found but is too small to verify: step closer), multiple_faces (a second face "
                    "large enough to be another person at the door), unknown_person, inactive_person (inactive "
                    "or outside its validity dates), not_authorized_here (no access group of the person grants "
                    "this device's door's zone, or the device stands at no door once doors exist) and "
                    "outside_schedule (no window of theirs open now; both decided at once, before any face "
                    "work, so even `wait=0` answers 200), no_references (fewer ready reference photos than "
                    "ENROLMENT_MIN_REFERENCES), "
                    "unreadable_image, locked_out (too many recent refusals for this person or device), "
                    "device_revoked (the device was revoked after it sent this check-in), replayed (the same "
                    "snapshot bytes were sent before, or the face is a near-duplicate of a recent probe of the "
                    "same claimed person), guard_refused (a guard refused a check-in in the review band; "
                    "coarse: not_recognised), review_timeout (in the review band and no guard answered within "
                    "REVIEW_TIMEOUT_SECONDS; coarse: review_timeout too)."
                ),
            ),
            202: OpenApiResponse(CheckInSerializer, description=(
                "Not decided within `wait`; poll `url`. `status` is `pending` or `processing` (stored and "
                "queued), or `review`: the score fell in the review band between the refuse and the admit "
                "threshold and a guard decides (show \"please wait\"); polling then answers the guard's "
                "decision, or 0 review_timeout when no guard answers within REVIEW_TIMEOUT_SECONDS.")),
            400: OpenApiResponse(
                description=(
                    "Refused; nothing stored. `code`: `invalid` (missing, unknown or malformed field: "
                    "`person` blank, over 64 characters or with a NUL byte, `wait` outside 0-10), "
                    "`empty_file`, `unreadable_image` (not an image, truncated), `unsupported_format`, "
                    "`image_too_large` (over IMAGE_MAX_PIXELS, checked before decoding), `file_too_large` "
                    "(over UPLOAD_MAX_BYTES)."
                )
            ),
            401: OpenApiResponse(description="Missing, unknown or revoked token."),
            429: OpenApiResponse(
                description=(
                    "Refused; nothing stored. `code`: `device_locked_out` (this device is locked out after "
                    "repeated refusals: retry after `Retry-After` seconds, also in `detail.retry_after`, or "
                    "when an operator unlocks it) or `throttled` (over API_RATE_LIMIT)."
                )
            ),
            503: OpenApiResponse(description="Could not store the check-in; retry after `Retry-After`."),
        },
    )
    def post(self, request: Request) -> Response:
        _reject_oversized_body(request)
        _reject_unknown_fields(request)
        data = {key: request.data[key] for key in request.data}
        if "wait" not in data and "wait" in request.query_params:
            data["wait"] = request.query_params["wait"]
        submitted = CheckInSubmitSerializer(data=data)
        submitted.is_valid(raise_exception=True)
        checkin = services.checkin_submit(
            device=request.auth,
            person_external_id=submitted.validated_data["person"],
            snapshot_file=submitted.validated_data["snapshot"],
        )
        until = time.monotonic() + submitted.validated_data["wait"]
        response = self._answer(request, checkin.pk)
        if response.status_code == status.HTTP_202_ACCEPTED and submitted.validated_data["wait"] > 0:
            # Not final yet (in-process tasks on a laptop are): ``checkin_create`` waits for it without
            # holding this thread or a database connection, then asks ``answer`` again.
            response.awaiting_decision = _AwaitingDecision(
                checkin_id=checkin.pk, until=until, answer=functools.partial(self._answer_after_wait, request, checkin.pk)
            )
        return response

    @staticmethod
    def _answer(request: Request, checkin_id: int, row: CheckIn | None = None) -> Response:
        checkin = row or CheckIn.objects.select_related("device").get(pk=checkin_id)
        body = checkin_response_serializer()(checkin, context={"request": request}).data
        if checkin.status in FINAL_STATUSES:
            return Response(body, status=status.HTTP_200_OK)
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": body["url"]})

    def _answer_after_wait(self, request: Request, checkin_id: int, row: CheckIn | None = None) -> Response:
        """The answer once the wait is over (from ``row``, the wait's last read, when it ended final),
        finished as DRF finishes a view's (renderer, errors)."""
        try:
            response = self._answer(request, checkin_id, row)
        except Exception as exc:  # noqa: BLE001 - handled exactly as inside the view (DRF's dispatch)
            response = self.handle_exception(exc)
        return self.finalize_response(request, response)


class CheckInDetailView(APIView):
    @extend_schema(
        operation_id="checkins_retrieve",
        responses={200: OpenApiResponse(CheckInSerializer, description=(
                       "The check-in as it stands: `status` pending, processing, review (a guard decides: keep "
                       "polling), decided or failed. A review past its deadline is answered 0 review_timeout "
                       "here, by this request, even where no beat runs.")),
                   401: OpenApiResponse(description="No valid token."),
                   404: OpenApiResponse(description="No such check-in for this device."),
                   429: OpenApiResponse(description=(
                       "`throttled`: over API_RATE_LIMIT (polling counts); retry after `Retry-After` seconds."))},
    )
    def get(self, request: Request, pk: str) -> Response:
        # Another device's check-in is indistinguishable from a missing one.
        if not (pk.isascii() and pk.isdigit()):  # isdigit alone takes "³" (int() fails) and "١" (read as 1)
            raise NotFound("No such check-in.")
        checkin = selectors.checkins_for_device(device=request.auth).filter(pk=int(pk)).first()
        if checkin is None:
            raise NotFound("No such check-in.")
        checkin = services.checkin_review_lapse_if_due(checkin=checkin)
        return Response(checkin_response_serializer()(checkin, context={"request": request}).data)


_checkin_create_drf = CheckInCreateView.as_view()


@csrf_exempt
async def checkin_create(request: HttpRequest) -> HttpResponse:
    """``POST /api/v1/checkins/``: ``CheckInCreateView`` (parsing, authentication, signatures, throttling,
    the check-in stored and queued) in the request's thread, then the ``wait`` served here, on the event
    loop: woken when the worker announces the decision (``services/waits.py``), holding no thread and no
    database connection meanwhile, so an ASGI web process serves any number of waiting doors.
    Under WSGI (and Django's test client) the same code runs in a loop of the request's own."""
    response = await sync_to_async(_checkin_create_drf)(request)
    awaiting: _AwaitingDecision | None = getattr(response, "awaiting_decision", None)
    if awaiting is None:
        return response
    read = services.CheckinRowReader()
    final = await services.checkin_wait_final(checkin_id=awaiting.checkin_id, until=awaiting.until, is_final=read)
    # Final: the row the wait just read is the answer. Not final (the wait ran out): read it once more.
    return await sync_to_async(awaiting.answer)(read.row if final else None)


# The OpenAPI schema (drf-spectacular) and DRF's tooling look for the APIView on the URL's callback.
for _attribute in ("cls", "initkwargs", "view_class", "view_initkwargs"):
    setattr(checkin_create, _attribute, getattr(_checkin_create_drf, _attribute))
