"""Where a check-in's CPU goes: the worker's path run in one process, under cProfile.

Runs ``checkin_submit`` and then ``checkin_process`` (what the Celery task calls) for ``--n`` check-ins
of the benchmark's door frame, in this process, against a throw-away SQLite database, and prints the CPU
time (``time.process_time``, all threads) per check-in of each half, the wall time of each stage the
service records, and the functions with the most cumulative time. No broker, web server or worker is
involved, so this is the floor the real stack's ``cpu_ms_per_checkin`` (bench/burst.py) is compared with.
``--postgres`` uses a throw-away database on ``BENCH_POSTGRES_URL`` instead (the deployment's database:
SQLite's commits cost differently), and also prints the queries per check-in.

    .venv/bin/python bench/profile_worker.py [--n 60] [--top 25] [--threads 1] [--postgres]
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

REPO_ROOT = Path(__file__).resolve().parents[1]


def _setup(workdir: Path, threads: int, database_url: str) -> None:
    sys.path.insert(0, str(REPO_ROOT))
    from bench._stack import BENCH_LIMITS

    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "accesscontrol.settings",
        "DATABASE_URL": database_url or f"sqlite:///{workdir / 'profile.sqlite3'}",
        "MEDIA_ROOT": str(workdir / "media"),
        "CELERY_BROKER_URL": "",
        "DEBUG": "1",  # dev defaults (secret key, hosts); DEBUG's query log is off outside requests
        "WORKER_TF_THREADS": str(threads),
        **BENCH_LIMITS,  # the benchmark's frames repeat, which a real door never sends
    })
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=60, help="check-ins profiled (after 5 warm-up ones)")
    parser.add_argument("--top", type=int, default=25, help="functions listed by cumulative time")
    parser.add_argument("--threads", type=int, default=1, help="TensorFlow threads (compose's worker: 1 per process)")
    parser.add_argument("--sort", default="cumulative", choices=("cumulative", "tottime"), help="order of the listing")
    parser.add_argument("--postgres", action="store_true", help="a throw-away PostgreSQL database, not SQLite")
    args = parser.parse_args(argv)
    if not args.postgres:
        return _profile(args, "")
    import psycopg

    sys.path.insert(0, str(REPO_ROOT))
    from bench._stack import POSTGRES_URL

    database = f"bench_profile_{os.getpid()}"
    with psycopg.connect(f"{POSTGRES_URL}/postgres", autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    try:
        return _profile(args, f"{POSTGRES_URL}/{database}")
    finally:
        from django.db import connections

        connections.close_all()
        with psycopg.connect(f"{POSTGRES_URL}/postgres", autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def _profile(args: argparse.Namespace, database_url: str) -> int:
    with tempfile.TemporaryDirectory(prefix="profile-worker-") as tmp:
        _setup(Path(tmp), args.threads, database_url)
        from django.core.files.uploadedfile import SimpleUploadedFile
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        from bench import _scenario
        from verification import inference, services
        from verification.models import CheckIn

        inference.get_model()
        device, _token = services.device_create(name="profile door")
        _scenario.enrol("profile-1", _scenario.reference_frames(3))
        frames = _scenario.probe_snapshots()

        def one(index: int) -> tuple[float, float, CheckIn]:
            upload = SimpleUploadedFile("snapshot.jpg", _scenario.new_frame(frames[index % len(frames)]),
                                        content_type="image/jpeg")
            started = time.process_time()
            checkin = services.checkin_submit(device=device, person_external_id="profile-1", snapshot_file=upload)
            submitted = time.process_time()
            services.checkin_process(checkin_id=checkin.pk)
            return (submitted - started) * 1000.0, (time.process_time() - submitted) * 1000.0, checkin

        # checkin_submit queues after commit; here the profile calls checkin_process itself.
        with mock.patch("verification.services.queueing.enqueue", return_value=True):
            for index in range(5):
                one(index)
            with CaptureQueriesContext(connection) as queries:
                one(5)
            profiler = cProfile.Profile(time.process_time)  # CPU time: the machine's other load does not count
            submit_ms, process_ms, ids = [], [], []
            profiler.enable()
            for index in range(args.n):
                submit, process, checkin = one(index)
                submit_ms.append(submit)
                process_ms.append(process)
                ids.append(checkin.pk)
            profiler.disable()

        rows = list(CheckIn.objects.filter(pk__in=ids))
        decisions = sorted({(row.decision, row.reason) for row in rows})
        stages: dict[str, list[float]] = {}
        for row in rows:
            for key, value in (row.timings or {}).items():
                stages.setdefault(key, []).append(float(value))
        summary = {
            "n": args.n,
            "tf_threads": args.threads,
            "decisions": [list(item) for item in decisions],
            "cpu_ms_median": {"submit": round(statistics.median(submit_ms), 1),
                              "process": round(statistics.median(process_ms), 1)},
            "stage_wall_ms_median": {key: round(statistics.median(values), 1) for key, values in sorted(stages.items())},
            "queries_per_checkin": len(queries.captured_queries),
            "database": connection.vendor,
            "load_avg_1m": round(os.getloadavg()[0], 2),
        }
        print(json.dumps(summary, indent=1))
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(args.sort).print_stats(args.top)
        print(out.getvalue())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
