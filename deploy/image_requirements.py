"""Print the requirements an image installs, read from pyproject.toml (the one list of dependencies).

    python deploy/image_requirements.py             # web: the base dependencies only
    python deploy/image_requirements.py worker      # the `worker` extra alone (on top of web's)

The images install the same releases as pyproject.toml names, with ``opencv-python`` swapped for
``opencv-python-headless``, its smaller build of the same library and version (no GUI, no libGL).
A self-reference such as ``accesscontrol[worker]`` is left out: the image installs each group itself.
Standard library only: it runs in the image's bare Python before anything is installed.
"""
from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"

# pyproject name -> the build an image installs instead (same import name, same version pin).
IMAGE_BUILDS = {
    "opencv-python": "opencv-python-headless",
}

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(.*)$", re.DOTALL)


def image_requirements(group: str = "web", pyproject: Path = PYPROJECT) -> list[str]:
    """The requirement lines for ``group``: "web" (the base dependencies) or an extra's name."""
    project = tomllib.loads(pyproject.read_text())["project"]
    if group == "web":
        lines = project["dependencies"]
    else:
        extras = project.get("optional-dependencies", {})
        if group not in extras:
            raise SystemExit(f"pyproject.toml has no extra {group!r} (it has: {', '.join(sorted(extras))})")
        lines = extras[group]
    out = []
    for line in lines:
        match = _NAME.match(line)
        if match is None:
            raise SystemExit(f"cannot read requirement {line!r}")
        name, rest = match.groups()
        if name.lower().replace("_", "-") == project["name"]:
            continue
        out.append(IMAGE_BUILDS.get(name.lower(), name) + rest)
    return out


if __name__ == "__main__":
    print("\n".join(image_requirements(*(sys.argv[1:2] or ["web"]))))
