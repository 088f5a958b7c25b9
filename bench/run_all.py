"""Run every benchmark, one after another, on an otherwise idle machine.

    .venv/bin/python bench/run_all.py                # model, door latency, burst, population
    .venv/bin/python bench/run_all.py --quick        # small counts: checks the scripts work (~2 min)
    .venv/bin/python bench/run_all.py --before REF   # also door latency and burst with the worker
                                                     # performance changes undone (REF = the commit
                                                     # before them), labelled "before"

Each benchmark starts what it needs (its own PostgreSQL database, its own redis-server, gunicorn,
Celery workers) and writes bench/results/<name>.json; the model benchmark's printout is kept in
bench/results/model.json. Results of a ``--quick`` run are labelled "quick" so they never replace
real figures.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
# What the worker performance work changed: undone in the "before" tree.
PERF_FILES = ("verification/inference.py", "accesscontrol/celery.py")
SETTINGS_FILE = "accesscontrol/settings.py"
SETTINGS_BLOCK_MARKER = "# --- Worker performance"


def run(args: list[str], *, capture: bool = False) -> str:
    print("$ " + " ".join(str(a) for a in args), flush=True)
    result = subprocess.run([sys.executable, *args], cwd=REPO_ROOT, check=True, text=True,
                            stdout=subprocess.PIPE if capture else None)
    if capture:
        print(result.stdout, end="")
        return result.stdout
    return ""


def before_tree(ref: str, dest: Path) -> Path:
    """HEAD's tree with the worker performance changes undone: PERF_FILES as of ``ref``, no settings block."""
    archive = subprocess.run(["git", "archive", "HEAD"], cwd=REPO_ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    for path in PERF_FILES:
        old = subprocess.run(["git", "show", f"{ref}:{path}"], cwd=REPO_ROOT, check=True, capture_output=True).stdout
        (dest / path).write_bytes(old)
    settings = (dest / SETTINGS_FILE).read_text()
    if SETTINGS_BLOCK_MARKER not in settings:
        raise RuntimeError(f"{SETTINGS_FILE} has no '{SETTINGS_BLOCK_MARKER}' block to remove")
    (dest / SETTINGS_FILE).write_text(settings[: settings.index(SETTINGS_BLOCK_MARKER)].rstrip() + "\n")
    return dest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts, results labelled 'quick'")
    parser.add_argument("--before", metavar="REF", help="also measure with the worker performance changes undone")
    parser.add_argument("--skip", default="", help="comma-separated: model,door,burst,population")
    args = parser.parse_args()
    skip = {name.strip() for name in args.skip.split(",") if name.strip()}
    unknown = skip - {"model", "door", "burst", "population"}
    if unknown:
        parser.error(f"--skip: unknown benchmark(s) {sorted(unknown)}")

    label = ["--label", "quick"] if args.quick else []
    door = ["--n", "20", "--warmup", "2"] if args.quick else []
    burst = ["--n", "40", "--clients", "8"] if args.quick else []
    population = ["--n", "5"] if args.quick else []

    if "model" not in skip:
        output = run(["bench/bench_model.py", *(["--repeats", "5"] if args.quick else [])], capture=True)
        RESULTS_DIR.mkdir(exist_ok=True)
        name = "model-quick.json" if args.quick else "model.json"
        (RESULTS_DIR / name).write_text(json.dumps(
            {"benchmark": "model", "command": ".venv/bin/python bench/bench_model.py", "output": output.splitlines()},
            indent=2) + "\n")
    if "door" not in skip:
        run(["bench/door_latency.py", *door, *label])
    if "burst" not in skip:
        run(["bench/burst.py", *burst, "--configs", "1x2,2x1,2x2", *label])
    if "population" not in skip:
        run(["bench/population.py", *population, *label])
    if args.before:
        with tempfile.TemporaryDirectory(prefix="bench-before-") as tmp:
            tree = before_tree(args.before, Path(tmp))
            before_label = ["--label", "before-quick" if args.quick else "before"]
            if "door" not in skip:
                run(["bench/door_latency.py", *door, "--code-dir", str(tree), *before_label])
            if "burst" not in skip:
                # Without the split both processes start TensorFlow's default pools (one thread per core).
                run(["bench/burst.py", *burst, "--configs", "1x0,2x0", "--code-dir", str(tree), *before_label])


if __name__ == "__main__":
    main()
