"""Bad input over the check-in and enrolment paths, one table, on the real stack (PostgreSQL, Redis and
the package's worker process with the shipped model).

Each row says what is sent and what must come back: the HTTP status and error ``code`` the API documents
(check-in), the ``InvalidImage`` code of ``reference_add`` (enrolment: the admin's inline form shows the
same code and message), or, for input that is acceptable, the verdict the worker reaches. After every
row: a refused input left no row and no file behind, an accepted one ended in a final state (never
pending, processing or failed), and the worker process is still alive.

Images are generated here from the committed fixture faces: person_a_1/2 are enrolled, person_a_3 is the
door snapshot (the shipped model admits it in every format below; rotated without its EXIF tag it finds
no face, so the EXIF row proves the orientation is applied).
"""
from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.core.files import File
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from PIL import Image
from rest_framework.test import APIClient

from verification import services
from verification.errors import InvalidImage
from verification.models import CheckIn, Person, ReferenceImage

from .harness import ManagedProcess

pytestmark = pytest.mark.integration

FACES = Path(__file__).resolve().parents[1] / "fixtures" / "faces"
URL = "/api/v1/checkins/"
DEFAULT_MAX_BYTES = 10_000_000
# The worker may still be loading TensorFlow and the model for its first task.
DECISION_TIMEOUT_S = 180


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


def final(checkin_id: int) -> CheckIn:
    return wait_for(
        lambda: CheckIn.objects.filter(pk=checkin_id, status__in=["decided", "failed"]).first(),
        DECISION_TIMEOUT_S,
        f"check-in {checkin_id} to be decided",
    )


def face() -> Image.Image:
    return Image.open(FACES / "person_a_3.jpg").convert("RGB")


def encode(image: Image.Image, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def exif_rotated() -> bytes:
    """The face stored sideways, with the EXIF orientation tag (6: rotate 90 degrees clockwise to view)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(face().transpose(Image.Transpose.ROTATE_90), "JPEG", exif=exif)


def png_bomb() -> bytes:
    """50 megapixels of one colour: a few kB on disk, 50 MB once decoded."""
    return encode(Image.new("L", (10_000, 5_000), 0), "PNG")


def grey_16bit() -> bytes:
    grey = np.asarray(face().convert("L")).astype(np.uint16) * 257
    return encode(Image.fromarray(grey), "PNG")


IMAGES: dict[str, Callable[[], bytes]] = {
    "empty": lambda: b"",
    "text-named-jpg": lambda: b"Dear door, please let me in.\n" * 20,
    "truncated-jpeg": lambda: (FACES / "person_a_3.jpg").read_bytes()[:4000],
    "png-bomb-50mp": png_bomb,
    "over-10mb": lambda: (FACES / "person_a_3.jpg").read_bytes() + b"\0" * DEFAULT_MAX_BYTES,
    "gif": lambda: encode(face().convert("P", palette=Image.Palette.ADAPTIVE), "GIF"),
    "webp": lambda: encode(face(), "WEBP"),
    "greyscale": lambda: encode(face().convert("L"), "JPEG"),
    "cmyk": lambda: encode(face().convert("CMYK"), "JPEG"),
    "16-bit": grey_16bit,
    "exif-rotated": exif_rotated,
    "jpeg": lambda: (FACES / "person_a_3.jpg").read_bytes(),
}


@dataclass(frozen=True)
class Case:
    """One row: what is sent, and what must come back."""

    path: str  # "checkin" (POST /api/v1/checkins/), "read" (GET .../<id>/) or "enrol" (reference_add)
    image: str = "jpeg"
    fields: dict[str, Any] = field(default_factory=lambda: {"person": "EMP-A"})
    status: int = 202  # HTTP status (check-in / read paths)
    code: str = ""  # error code, for refusals
    verdict: tuple = ()  # accepted input: (decision, reason) of a check-in, (status, reason) of a photo


TABLE: dict[str, Case] = {
    # --- check-in: the snapshot ---
    "checkin-empty-file": Case("checkin", "empty", status=400, code="empty_file"),
    "checkin-text-named-jpg": Case("checkin", "text-named-jpg", status=400, code="unreadable_image"),
    "checkin-truncated-jpeg": Case("checkin", "truncated-jpeg", status=400, code="unreadable_image"),
    "checkin-png-bomb-50mp": Case("checkin", "png-bomb-50mp", status=400, code="image_too_large"),
    "checkin-over-size-limit": Case("checkin", "over-10mb", status=400, code="file_too_large"),
    "checkin-gif": Case("checkin", "gif", verdict=(1, "")),
    "checkin-webp": Case("checkin", "webp", verdict=(1, "")),
    "checkin-greyscale": Case("checkin", "greyscale", verdict=(1, "")),
    "checkin-cmyk": Case("checkin", "cmyk", verdict=(1, "")),
    "checkin-16-bit": Case("checkin", "16-bit", verdict=(1, "")),
    "checkin-exif-rotated": Case("checkin", "exif-rotated", verdict=(1, "")),
    # --- check-in: the claimed person ---
    "checkin-unknown-person": Case("checkin", fields={"person": "NOBODY-404"}, verdict=(0, "unknown_person")),
    "checkin-inactive-person": Case("checkin", fields={"person": "EMP-INACTIVE"}, verdict=(0, "inactive_person")),
    "checkin-validity-ended": Case("checkin", fields={"person": "EMP-EXPIRED"}, verdict=(0, "inactive_person")),
    "checkin-validity-not-begun": Case("checkin", fields={"person": "EMP-FUTURE"}, verdict=(0, "inactive_person")),
    "checkin-sql-in-person": Case(
        "checkin", fields={"person": "EMP-A' OR '1'='1"}, verdict=(0, "unknown_person")
    ),
    "checkin-html-in-person": Case(
        "checkin", fields={"person": "<script>alert(1)</script>"}, verdict=(0, "unknown_person")
    ),
    "checkin-person-too-long": Case("checkin", fields={"person": "X" * 65}, status=400, code="invalid"),
    "checkin-person-blank": Case("checkin", fields={"person": "   "}, status=400, code="invalid"),
    "checkin-person-nul-byte": Case("checkin", fields={"person": "EMP-A\x00"}, status=400, code="invalid"),
    # --- check-in: fields ---
    "checkin-missing-snapshot": Case("checkin", "", status=400, code="invalid"),
    "checkin-missing-person": Case("checkin", fields={}, status=400, code="invalid"),
    "checkin-extra-field": Case("checkin", fields={"person": "EMP-A", "is_admin": "1"}, status=400, code="invalid"),
    "checkin-huge-wait": Case("checkin", fields={"person": "EMP-A", "wait": "1e9"}, status=400, code="invalid"),
    "checkin-negative-wait": Case("checkin", fields={"person": "EMP-A", "wait": "-1"}, status=400, code="invalid"),
    "checkin-nan-wait": Case("checkin", fields={"person": "EMP-A", "wait": "nan"}, status=400, code="invalid"),
    "checkin-infinite-wait": Case("checkin", fields={"person": "EMP-A", "wait": "inf"}, status=400, code="invalid"),
    "checkin-text-wait": Case("checkin", fields={"person": "EMP-A", "wait": "soon"}, status=400, code="invalid"),
    # --- reading a check-in: ids ---
    "read-non-numeric-id": Case("read", fields={"id": "abc"}, status=404, code="not_found"),
    "read-sql-in-id": Case("read", fields={"id": "1 OR 1=1"}, status=404, code="not_found"),
    "read-id-beyond-bigint": Case("read", fields={"id": "9" * 30}, status=404, code="not_found"),
    "read-negative-id": Case("read", fields={"id": "-1"}, status=404, code="not_found"),
    "read-superscript-digit-id": Case("read", fields={"id": "\u00b3"}, status=404, code="not_found"),
    # --- enrolment: the reference photo ---
    "enrol-empty-file": Case("enrol", "empty", code="empty_file"),
    "enrol-text-named-jpg": Case("enrol", "text-named-jpg", code="unreadable_image"),
    "enrol-truncated-jpeg": Case("enrol", "truncated-jpeg", code="unreadable_image"),
    "enrol-png-bomb-50mp": Case("enrol", "png-bomb-50mp", code="image_too_large"),
    "enrol-over-size-limit": Case("enrol", "over-10mb", code="file_too_large"),
    "enrol-gif": Case("enrol", "gif", verdict=("ready", "")),
    "enrol-webp": Case("enrol", "webp", verdict=("ready", "")),
    "enrol-greyscale": Case("enrol", "greyscale", verdict=("ready", "")),
    "enrol-cmyk": Case("enrol", "cmyk", verdict=("ready", "")),
    "enrol-16-bit": Case("enrol", "16-bit", verdict=("ready", "")),
    "enrol-exif-rotated": Case("enrol", "exif-rotated", verdict=("ready", "")),
}


@pytest.fixture
def people(integration_db: ManagedProcess) -> Person:
    """EMP-A enrolled (embedded by the worker) plus the people a door must refuse whatever the face."""
    now = timezone.now()
    services.person_create(name="Former Staff", external_id="EMP-INACTIVE", is_active=False)
    services.person_create(name="Past Contractor", external_id="EMP-EXPIRED", valid_until=now - timedelta(days=1))
    services.person_create(name="Future Hire", external_id="EMP-FUTURE", valid_from=now + timedelta(days=1))
    person = services.person_create(name="Person A", external_id="EMP-A")
    for n in (1, 2):
        with (FACES / f"person_a_{n}.jpg").open("rb") as handle:
            services.reference_add(person=person, image_file=File(handle, name=f"person_a_{n}.jpg"))
    wait_for(lambda: not person.references.filter(status="pending").exists(), DECISION_TIMEOUT_S, "enrolment")
    assert set(person.references.values_list("status", flat=True)) == {"ready"}
    return person


@pytest.fixture
def door(integration_db: ManagedProcess) -> APIClient:
    _, token = services.device_create(name="bad-input-door")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def media_files(root: Path) -> set[Path]:
    return {path for path in root.rglob("*") if path.is_file()}


def run_checkin(case: Case, door: APIClient) -> tuple[int, dict]:
    body: dict[str, Any] = dict(case.fields)
    if case.image:
        body["snapshot"] = SimpleUploadedFile("snapshot.jpg", IMAGES[case.image](), content_type="image/jpeg")
    response = door.post(URL, body, format="multipart")
    return response.status_code, response.json()


def run_read(case: Case, door: APIClient) -> tuple[int, dict]:
    response = door.get(f"{URL}{case.fields['id']}/")
    return response.status_code, response.json()


@pytest.mark.parametrize("name", list(TABLE))
def test_bad_input_gets_its_documented_answer_and_changes_nothing(
    name: str, people: Person, door: APIClient, integration_db: ManagedProcess, integration_media_root: Path
) -> None:
    case = TABLE[name]
    files_before = media_files(integration_media_root)
    checkins_before = CheckIn.objects.count()
    references_before = ReferenceImage.objects.count()

    if case.path == "enrol":
        data = IMAGES[case.image]()
        if case.code:
            with pytest.raises(InvalidImage) as refused:
                services.reference_add(person=people, image_file=File(io.BytesIO(data), name="photo.jpg"))
            assert refused.value.code == case.code and refused.value.message
        else:
            reference = services.reference_add(person=people, image_file=File(io.BytesIO(data), name="photo.jpg"))
            wait_for(
                lambda: ReferenceImage.objects.exclude(status="pending").filter(pk=reference.pk).first(),
                DECISION_TIMEOUT_S,
                f"reference {reference.pk} to be checked",
            )
            reference.refresh_from_db()
            assert (reference.status, reference.reason) == case.verdict
    else:
        status, body = (run_read if case.path == "read" else run_checkin)(case, door)
        assert status == case.status, body
        if case.code:
            assert set(body) == {"code", "message", "detail"} and body["message"]
            assert body["code"] == case.code, body
        else:
            checkin = final(body["id"])
            assert (checkin.status, checkin.decision, checkin.reason) == ("decided", *case.verdict)
            assert checkin.claimed_external_id == case.fields["person"]  # stored verbatim, never interpreted

    if case.code:  # a refusal changed nothing: no row, no file
        assert CheckIn.objects.count() == checkins_before
        assert ReferenceImage.objects.count() == references_before
        assert media_files(integration_media_root) == files_before
    assert not CheckIn.objects.filter(status__in=["pending", "processing", "failed"]).exists()
    assert integration_db.process.poll() is None, "the worker process died"
