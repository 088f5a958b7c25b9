"""The web process never imports TensorFlow (nor ``ml``): only workers load the model."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCRIPT = """
import sys, django
django.setup()
from django.urls import resolve
import accesscontrol.urls, verification.admin, verification.api.views, verification.services, verification.tasks
from django.test import Client
resolve("/api/v1/checkins/")
Client().get("/api/schema/")
watched = ("tensorflow", "keras", "mtcnn", "ml", "verification.inference")
loaded = sorted(name for name in sys.modules if name in watched or name.startswith(tuple(w + "." for w in watched)))
print("LOADED:" + ",".join(loaded))
"""


def test_importing_urls_admin_and_api_does_not_import_tensorflow_or_the_model_bridge():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "accesscontrol.settings", "DEBUG": "1"}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "LOADED:\n" in result.stdout or result.stdout.strip() == "LOADED:", result.stdout
