"""manage.py check_media: files no row owns and rows whose file is missing (issue 9, item 10)."""
from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest
from django.core.management import call_command

from tests.conftest import image_bytes
from verification.models import CheckIn, ReferenceImage

DAY = 86_400


def _file(media_root: Path, name: str, *, age_seconds: float = 2 * DAY) -> str:
    path = media_root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(image_bytes())
    then = time.time() - age_seconds
    os.utime(path, (then, then))
    return name


def _run(*args: str) -> str:
    out = io.StringIO()
    call_command("check_media", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def owned(settings, person, device):
    """A check-in with its snapshot and a reference with photo and crop, all files on disk and old."""
    root = Path(settings.MEDIA_ROOT)
    checkin = CheckIn.objects.create(
        device=device, claimed_external_id=person.external_id, snapshot=_file(root, "snapshots/owned.jpg")
    )
    reference = ReferenceImage.objects.create(
        person=person, image=_file(root, "references/owned.jpg"), face_crop=_file(root, "faces/owned.jpg")
    )
    return checkin, reference


def test_orphans_are_reported_and_nothing_is_deleted_without_delete(settings, owned, caplog):
    root = Path(settings.MEDIA_ROOT)
    for name in ("snapshots/orphan.jpg", "references/rolled-back.jpg", "faces/stray.jpg"):
        _file(root, name)

    output = _run()

    assert "3 orphan file(s)" in output
    for name in ("snapshots/orphan.jpg", "references/rolled-back.jpg", "faces/stray.jpg"):
        assert f"orphan: {name}" in output
        assert (root / name).exists()
    assert "owned.jpg" not in output
    assert "media check" in caplog.text and "WARNING" in [r.levelname for r in caplog.records]


def test_delete_removes_old_orphans_and_leaves_owned_files_alone(settings, owned):
    root = Path(settings.MEDIA_ROOT)
    _file(root, "snapshots/orphan.jpg")

    output = _run("--delete")

    assert "orphan: snapshots/orphan.jpg (deleted)" in output
    assert not (root / "snapshots/orphan.jpg").exists()
    for name in ("snapshots/owned.jpg", "references/owned.jpg", "faces/owned.jpg"):
        assert (root / name).exists()
    checkin, reference = owned
    checkin.refresh_from_db()
    reference.refresh_from_db()
    assert checkin.snapshot.name == "snapshots/owned.jpg" and reference.face_crop.name == "faces/owned.jpg"


def test_an_orphan_younger_than_the_grace_period_is_kept(settings, owned):
    settings.MEDIA_ORPHAN_GRACE_SECONDS = 3600
    root = Path(settings.MEDIA_ROOT)
    _file(root, "snapshots/being-submitted.jpg", age_seconds=60)
    _file(root, "snapshots/old.jpg", age_seconds=7200)

    output = _run("--delete")

    assert (root / "snapshots/being-submitted.jpg").exists()
    assert "kept (younger than the grace period): snapshots/being-submitted.jpg" in output
    assert not (root / "snapshots/old.jpg").exists()


def test_grace_period_can_be_given_on_the_command_line(settings, owned):
    root = Path(settings.MEDIA_ROOT)
    _file(root, "snapshots/recent.jpg", age_seconds=60)
    _run("--delete", "--grace-seconds", "0")
    assert not (root / "snapshots/recent.jpg").exists()


def test_rows_whose_file_is_missing_are_reported_never_changed(settings, owned):
    checkin, reference = owned
    root = Path(settings.MEDIA_ROOT)
    (root / "snapshots/owned.jpg").unlink()
    (root / "faces/owned.jpg").unlink()

    output = _run("--delete")

    assert f"missing: verification.checkin:{checkin.pk}:snapshot:snapshots/owned.jpg" in output
    assert f"missing: verification.referenceimage:{reference.pk}:face_crop:faces/owned.jpg" in output
    assert "2 row(s) whose file is missing" in output
    checkin.refresh_from_db()
    assert checkin.snapshot.name == "snapshots/owned.jpg"


def test_purged_snapshots_and_empty_folders_are_fine(settings, person, device, caplog):
    CheckIn.objects.create(device=device, claimed_external_id=person.external_id, snapshot="")
    caplog.set_level("INFO")
    output = _run()
    assert "0 orphan file(s)" in output and "0 row(s) whose file is missing" in output
    assert "every file has its row" in caplog.text


def test_beat_runs_the_report_daily_and_the_task_deletes_nothing(settings, owned):
    from accesscontrol.celery import app
    from verification.tasks import media_check_task

    schedule = {entry["task"]: entry["schedule"] for entry in app.conf.beat_schedule.values()}
    assert schedule["verification.tasks.media_check_task"] == 86_400.0
    root = Path(settings.MEDIA_ROOT)
    _file(root, "snapshots/orphan.jpg")

    result = media_check_task()

    assert result["orphans"] == ["snapshots/orphan.jpg"] and result["deleted"] == []
    assert (root / "snapshots/orphan.jpg").exists()
