"""What the benchmarks post and enrol, how they post it, and the statistics they print.

Snapshots are door-camera frames: a committed fixture photo (250x250, face about 110 px wide) placed
in a 640x480 frame and saved as a JPEG, the way a kiosk camera would send it. The claimed person is
enrolled from other photos of the same person, so every check-in runs the whole pipeline (decode,
detect, align, embed, score) and should end in decision 1.
"""
from __future__ import annotations

import io
import itertools
import json
import platform
import statistics
import struct
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import requests
from PIL import Image, ImageEnhance

REPO_ROOT = Path(__file__).resolve().parents[1]
FACES = REPO_ROOT / "tests" / "fixtures" / "faces"
RESULTS_DIR = Path(__file__).resolve().parent / "results"
FRAME_SIZE = (640, 480)
# The check-in photo and the photos its person is enrolled from (same person, different photos).
PROBE_PHOTO = FACES / "person_a_3.jpg"
REFERENCE_PHOTOS = (FACES / "person_a_1.jpg", FACES / "person_a_2.jpg")


def door_frame(photo: Path, *, dx: int = 0, dy: int = 0, brightness: float = 1.0, mirror: bool = False) -> bytes:
    """A 640x480 JPEG (quality 90) of ``photo`` placed near the centre of a plain background."""
    face = Image.open(photo).convert("RGB")
    if mirror:
        face = face.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if brightness != 1.0:
        face = ImageEnhance.Brightness(face).enhance(brightness)
    gradient = np.linspace(70, 150, FRAME_SIZE[0], dtype=np.uint8)
    background = np.dstack([np.tile(gradient, (FRAME_SIZE[1], 1))] * 3)
    frame = Image.fromarray(background)
    x = (FRAME_SIZE[0] - face.width) // 2 + dx
    y = (FRAME_SIZE[1] - face.height) // 2 + dy
    frame.paste(face, (x, y))
    buffer = io.BytesIO()
    frame.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def probe_snapshots(count: int = 8) -> list[bytes]:
    """A few slightly different frames of the probe photo (position), cycled through by the posts."""
    return [door_frame(PROBE_PHOTO, dx=12 * (i % 4) - 18, dy=8 * (i // 4) - 4) for i in range(count)]


def reference_frames(count: int) -> list[bytes]:
    """``count`` distinct enrolment frames from the reference photos (position, light, mirror)."""
    frames = []
    for i in range(count):
        photo = REFERENCE_PHOTOS[i % len(REFERENCE_PHOTOS)]
        variant = i // len(REFERENCE_PHOTOS)
        frames.append(
            door_frame(
                photo,
                dx=10 * (variant % 5) - 20,
                dy=6 * ((variant // 5) % 5) - 12,
                brightness=0.85 + 0.06 * (variant % 6),
                mirror=bool(variant % 2),
            )
        )
    return frames


def create_device(name: str) -> str:
    from verification import services

    _device, token = services.device_create(name=name)
    return token


def enrol(external_id: str, frames: Sequence[bytes], *, timeout: float = 600.0) -> int:
    """Create a person with one reference per frame, wait until the worker embedded them all."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from verification import services
    from verification.models import ReferenceImage

    person = services.person_create(name=f"Bench {external_id}", external_id=external_id)
    for index, data in enumerate(frames):
        upload = SimpleUploadedFile(f"ref-{index}.jpg", data, content_type="image/jpeg")
        services.reference_add(person=person, image_file=upload)
    deadline = time.monotonic() + timeout
    while ReferenceImage.objects.filter(person=person, status=ReferenceImage.Status.PENDING).exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"references of {external_id} still pending after {timeout:.0f}s")
        time.sleep(0.2)
    rejected = list(ReferenceImage.objects.filter(person=person).exclude(status=ReferenceImage.Status.READY)
                    .values_list("reason", flat=True))
    if rejected:
        raise RuntimeError(f"{len(rejected)} reference frame(s) of {external_id} were rejected: {rejected}")
    return person.pk


@dataclass(frozen=True)
class Posted:
    """One check-in as the door saw it: HTTP status, body, and when it was sent/answered."""

    status: int
    body: dict
    sent_at: float  # time.time(): comparable with the servers' timestamps on this host
    elapsed_ms: float  # perf_counter: the latency the door waited


_frame_numbers = itertools.count(1)


def new_frame(jpeg: bytes) -> bytes:
    """``jpeg`` with a numbered JPEG comment after its start marker: the same pixels (face, embedding),
    new bytes. A camera never sends the same bytes twice, and the service refuses them ``replayed``
    before any face work, which would measure the refusal instead of verification."""
    comment = f"bench frame {next(_frame_numbers)}".encode()
    return jpeg[:2] + b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment + jpeg[2:]


def post_checkin(session: requests.Session, url: str, token: str, *, person: str, snapshot: bytes,
                 wait: float) -> Posted:
    snapshot = new_frame(snapshot)
    sent_at = time.time()
    start = time.perf_counter()
    response = session.post(
        f"{url}/api/v1/checkins/",
        headers={"Authorization": f"Token {token}"},
        data={"person": person, "wait": str(wait)},
        files={"snapshot": ("snapshot.jpg", snapshot, "image/jpeg")},
        timeout=60,
    )
    elapsed_ms = (time.perf_counter() - start) * 1000.0
    if response.status_code not in (200, 202):
        raise RuntimeError(f"check-in refused: {response.status_code} {response.text[:500]}")
    return Posted(response.status_code, response.json(), sent_at, elapsed_ms)


def wait_all_final(ids: Iterable[int], *, timeout: float) -> float:
    """Block until every check-in in ``ids`` is decided or failed; returns the time.time() it happened."""
    from verification.models import CheckIn

    ids = list(ids)
    deadline = time.monotonic() + timeout
    while CheckIn.objects.filter(pk__in=ids, status__in=[CheckIn.Status.PENDING, CheckIn.Status.PROCESSING]).exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"check-ins still undecided after {timeout:.0f}s")
        time.sleep(0.05)
    return time.time()


def exactly_one_decision(ids: Sequence[int]) -> dict:
    """None lost, none duplicated: each id decided once in the table and once in the audit log."""
    from django.db.models import Count

    from verification.models import AuditEntry, CheckIn

    rows = CheckIn.objects.filter(pk__in=ids)
    decided = rows.filter(status=CheckIn.Status.DECIDED, decision__in=[0, 1]).count()
    audit_counts = dict(
        AuditEntry.objects.filter(checkin_id__in=ids, kind=AuditEntry.Kind.DECISION)
        .values_list("checkin_id").annotate(n=Count("id")).values_list("checkin_id", "n")
    )
    return {
        "posted": len(ids),
        "rows": rows.count(),
        "decided": decided,
        "decision_1": rows.filter(decision=1).count(),
        "reasons": dict(rows.values_list("reason").annotate(n=Count("id")).values_list("reason", "n")),
        "audit_rows_missing": sum(1 for i in ids if audit_counts.get(i, 0) == 0),
        "audit_rows_duplicated": sum(1 for n in audit_counts.values() if n > 1),
        "ok": decided == len(ids) == rows.count()
        and all(audit_counts.get(i, 0) == 1 for i in ids),
    }


def percentiles(values: Sequence[float], points: Sequence[int] = (50, 95, 99)) -> dict[str, float]:
    if not values:
        raise ValueError("no samples")
    array = np.asarray(values, dtype=np.float64)
    return {f"p{p}": round(float(np.percentile(array, p)), 1) for p in points}


def median(values: Iterable[float]) -> float:
    values = list(values)
    return round(float(statistics.median(values)), 1) if values else float("nan")


def machine() -> dict:
    """What the figures were measured on (they mean little without it)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                                text=True, check=False).stdout.strip()
    except OSError:
        commit = ""
    from ml.inference import SHIPPED_MODEL_DIR

    manifest = json.loads((SHIPPED_MODEL_DIR / "manifest.json").read_text())
    import os

    return {
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": commit,
        "model_version": manifest.get("version"),
        "cpus": len(os.sched_getaffinity(0)),
        "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
    }


def write_results(name: str, results: dict) -> Path:
    import os

    # With the start value, shows whether something else loaded the CPU during the run (the bench's
    # own servers count too: about 1-2 on 2 cores while they work).
    results.setdefault("machine", {})["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    return path
