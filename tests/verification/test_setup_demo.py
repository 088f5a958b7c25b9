"""setup_demo: a working admin login, device token and enrolled demo people; idempotent."""
from __future__ import annotations

import io
import re

import pytest
from django.contrib.auth import authenticate
from django.core.management import CommandError, call_command

from tests.conftest import image_bytes
from verification import selectors
from verification.models import Person, ReferenceImage

pytestmark = pytest.mark.django_db


@pytest.fixture
def faces(tmp_path):
    folder = tmp_path / "faces"
    folder.mkdir()
    for name in ["alice_1.jpg", "alice_2.jpg", "alice_3.jpg", "bob_1.jpg", "bob_2.jpg", "carol_1.jpg", "notes.txt"]:
        (folder / name).write_bytes(image_bytes() if name.endswith(".jpg") else b"x")
    return folder


def run(faces) -> str:
    out = io.StringIO()
    call_command("setup_demo", "--faces", str(faces), stdout=out)
    return out.getvalue()


def test_setup_demo_prints_working_credentials_and_enrols_people(faces, fake_model, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        output = run(faces)
    password = re.search(r"password '([^']+)'", output)[1]
    token = re.search(r"Device token: (\S+)", output)[1]
    assert authenticate(username="admin", password=password).is_superuser
    assert selectors.device_by_token(raw_token=token).name == "demo-door"
    assert sorted(Person.objects.values_list("name", flat=True)) == ["Alice", "Bob"]  # carol has one photo
    alice = Person.objects.get(name="Alice")
    assert alice.references.filter(status=ReferenceImage.Status.READY).count() == 2  # third held back
    assert f"snapshot=@{faces / 'alice_3.jpg'}" in output
    assert f"person={alice.external_id}" in output


def test_setup_demo_twice_keeps_people_and_renews_the_secrets(faces, fake_model):
    first = run(faces)
    second = run(faces)
    assert Person.objects.count() == 2
    assert ReferenceImage.objects.count() == 3
    old_token = re.search(r"Device token: (\S+)", first)[1]
    new_token = re.search(r"Device token: (\S+)", second)[1]
    assert selectors.device_by_token(raw_token=old_token) is None
    assert selectors.device_by_token(raw_token=new_token) is not None


def test_setup_demo_without_faces_is_a_clear_error(tmp_path):
    with pytest.raises(CommandError, match="No people with two or more photos"):
        run(tmp_path)


def test_default_faces_are_package_data_so_an_image_without_tests_has_them():
    import tomllib
    from pathlib import Path

    from verification.management.commands.setup_demo import DEMO_FACES, group_faces

    repo = Path(__file__).resolve().parents[2]
    assert DEMO_FACES == repo / "verification" / "demo" / "faces"
    people = {slug: photos for slug, photos in group_faces(DEMO_FACES).items() if len(photos) >= 2}
    assert len(people) >= 2
    package_data = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "demo/**/*" in package_data["verification"]
    # The same photos as the test fixtures (whose README gives their source), not a second set.
    fixtures = repo / "tests" / "fixtures" / "faces"
    for photos in people.values():
        for photo in photos:
            assert photo.read_bytes() == (fixtures / photo.name).read_bytes()
