"""python manage.py setup_demo: an admin login, a device token and demo people, ready to try.

Idempotent: reruns keep the same people and photos; the admin password and the device token are
renewed on each run (only hashes are stored, so printing them again needs new ones).
Demo people come from face photos named ``<person>_<n>.<ext>`` in ``--faces`` (default
``verification/demo/faces``, package data, so an image without ``tests/`` has them too): every photo
but the last of each person is enrolled; the last one is kept back as the genuine snapshot for the
printed ``curl`` check-in.
"""
from __future__ import annotations

import re
import secrets
from collections import defaultdict
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.files import File
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from verification import inference, services
from verification.errors import ModelUnavailable
from verification.models import Device, Person

FACE_SUFFIXES = {".jpg", ".jpeg", ".png"}
NAME_PATTERN = re.compile(r"^(?P<person>.+?)[_-](?P<n>\d+)$")
ADMIN_USERNAME = "admin"
DEVICE_NAME = "demo-door"
DEMO_ACTOR = "cli:setup_demo"  # the actor of the audit entries the demo set-up appends
DEMO_FACES = Path(__file__).resolve().parents[2] / "demo" / "faces"


def group_faces(folder: Path) -> dict[str, list[Path]]:
    """``{person_slug: [photos sorted by number]}`` for files named ``<person>_<n>.<ext>``."""
    groups: dict[str, list[tuple[int, Path]]] = defaultdict(list)
    for path in sorted(folder.iterdir()):
        match = NAME_PATTERN.match(path.stem)
        if path.suffix.lower() in FACE_SUFFIXES and match:
            groups[match["person"]].append((int(match["n"]), path))
    return {slug: [path for _, path in sorted(items)] for slug, items in groups.items()}


class Command(BaseCommand):
    help = "Create (or refresh) the demo site: admin login, device token, demo people enrolled from sample faces."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--faces", type=Path, default=DEMO_FACES)
        parser.add_argument("--base-url", default="http://127.0.0.1:8000")

    def handle(self, *args, faces: Path, base_url: str, **options) -> None:
        if not faces.is_dir():
            raise CommandError(f"No face folder at {faces}.")
        groups = {slug: photos for slug, photos in group_faces(faces).items() if len(photos) >= 2}
        if not groups:
            raise CommandError(f"No people with two or more photos named <person>_<n>.jpg in {faces}.")
        password = self._admin()
        token = self._device()
        probes = self._people(groups)
        self._refresh_stale_embeddings()
        base_url = base_url.rstrip("/")
        self.stdout.write(f"Admin:        {base_url}/admin/  (user {ADMIN_USERNAME!r}, password {password!r})")
        self.stdout.write(f"Device token: {token}  (device {DEVICE_NAME!r})")
        for external_id, probe in probes.items():
            self.stdout.write(f"Person:       {external_id} (genuine snapshot held back: {probe})")
        external_id, probe = next(iter(probes.items()))
        self.stdout.write("Check in:")
        self.stdout.write(
            f'  curl -s -H "Authorization: Token {token}" -F "snapshot=@{probe}" -F "person={external_id}" '
            f'-F "wait=10" {base_url}/api/v1/checkins/'
        )

    @transaction.atomic
    def _admin(self) -> str:
        password = secrets.token_urlsafe(12)
        user, _ = get_user_model().objects.get_or_create(
            username=ADMIN_USERNAME, defaults={"email": "admin@example.org", "is_staff": True, "is_superuser": True}
        )
        user.set_password(password)
        user.is_staff = user.is_superuser = user.is_active = True
        user.save()
        return password

    def _device(self) -> str:
        device = Device.objects.filter(name=DEVICE_NAME).first()
        if device is None:
            return services.device_create(name=DEVICE_NAME, operator=DEMO_ACTOR)[1]
        return services.device_issue_token(device=device, operator=DEMO_ACTOR)

    def _refresh_stale_embeddings(self) -> None:
        # A rerun after the shipped model changed: photos embedded by the old model are redone.
        try:
            version = inference.configured_model_version()
        except ModelUnavailable as exc:
            self.stderr.write(f"warning: {exc}; reference photos are not re-embedded")
            return
        stale = services.references_requeue_stale(model_version=version)
        if stale:
            self.stderr.write(f"Re-embedding {len(stale)} demo photo(s) with model {version}.")

    def _people(self, groups: dict[str, list[Path]]) -> dict[str, Path]:
        probes: dict[str, Path] = {}
        for index, (slug, photos) in enumerate(sorted(groups.items()), start=1):
            external_id = f"DEMO-{index:03d}"
            person = Person.objects.filter(external_id=external_id).first()
            if person is None:
                name = slug.replace("_", " ").replace("-", " ").title()
                person = services.person_create(name=name, external_id=external_id, operator=DEMO_ACTOR)
            if not person.references.exists():
                for photo in photos[:-1]:
                    with photo.open("rb") as handle:
                        services.reference_add(
                            person=person, image_file=File(handle, name=photo.name), operator=DEMO_ACTOR
                        )
            probes[external_id] = photos[-1]
        return probes
