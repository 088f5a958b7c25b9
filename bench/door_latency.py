"""Door latency: POST /api/v1/checkins/ with ``wait`` until the decision is in the response.

    .venv/bin/python bench/door_latency.py [--n 200] [--threads N] [--code-dir DIR] [--label NAME]

Real stack (gunicorn with compose's web command, a private redis-server, its own PostgreSQL database,
ONE Celery worker process with the shipped model), one door posting 640x480 JPEG snapshots one after
another. Prints p50/p95/p99 of what the door waited, the median of each slice of the path, and
writes bench/results/door_latency[-LABEL].json. Target (issue 5): p50 <= 150 ms, p95 <= 300 ms.

Slices, all on this host's clock (the servers' timestamps are comparable with the client's):
  submit        client sends -> row inserted (HTTP upload, auth, image checks, snapshot file, INSERT)
  queue         row inserted -> worker claimed it (commit, publish to Redis, worker picks it up)
  decode, detect+align, embed, score   the worker's own stage timings
  worker other  rest of the worker's processing (person and reference reads, snapshot file read)
  decide+reply  worker finished scoring -> door has the answer, in two parts:
    announce    worker finished scoring -> the decision's wake-up message seen on Redis (decision +
                audit row written and committed, the message published; a listener in this script), of
                which decision_to_announce from the decision's timestamp (``decided_at``, taken as
                ``checkin_decide`` starts) on
    reply       that message -> door has the answer (the waiting request wakes, reads the row, answers)
and, measured on their own: the decision's DB write (``checkin_decide`` timed in-process on the same
database), the submit path alone (POST with ``wait=0``, answered 202), the read path (GET of a
check-in), and the first check-in a freshly started worker process handles (its warm-up at work).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import requests

from _scenario import (
    PROBE_PHOTO,
    create_device,
    enrol,
    machine,
    median,
    percentiles,
    post_checkin,
    probe_snapshots,
    reference_frames,
    wait_all_final,
    write_results,
)
from _stack import REPO_ROOT, Stack

PERSON = "door-a"


class AnnouncementListener:
    """Records when each check-in's wake-up message (``services/waits.py``) reaches Redis's subscribers."""

    def __init__(self, redis_url: str) -> None:
        import redis

        self.seen: dict[int, float] = {}
        self._pubsub = redis.Redis.from_url(redis_url).pubsub(ignore_subscribe_messages=True)
        self._pubsub.psubscribe(**{"accesscontrol:checkin-final:*": self._record})
        self._thread = self._pubsub.run_in_thread(sleep_time=0.5, daemon=True)

    def _record(self, message: dict) -> None:
        self.seen.setdefault(int(message["channel"].rsplit(b":", 1)[1]), time.time())

    def close(self) -> None:
        self._thread.stop()  # the thread closes the subscription itself once it sees the flag
        self._thread.join(timeout=5)


def breakdown(ids: list[int], posted: dict[int, object], announced: dict[int, float] | None = None) -> dict[str, float]:
    from verification.models import CheckIn

    slices: dict[str, list[float]] = {k: [] for k in (
        "submit_ms", "queue_ms", "decode_ms", "detect_align_ms", "embed_ms", "score_ms", "worker_other_ms",
        "decide_and_reply_ms", "announce_ms", "decision_to_announce_ms", "reply_ms", "worker_process_ms", "end_to_end_ms")}
    for row in CheckIn.objects.filter(pk__in=ids):
        sent = posted[row.pk]
        t = row.timings
        stages = t["decode_ms"] + t["detect_ms"] + t["embed_ms"] + t["score_ms"]
        worker_done = row.started_at.timestamp() + t["process_ms"] / 1000.0
        slices["submit_ms"].append((row.created_at.timestamp() - sent.sent_at) * 1000.0)
        slices["queue_ms"].append((row.started_at - row.created_at).total_seconds() * 1000.0)
        slices["decode_ms"].append(t["decode_ms"])
        slices["detect_align_ms"].append(t["detect_ms"])
        slices["embed_ms"].append(t["embed_ms"])
        slices["score_ms"].append(t["score_ms"])
        slices["worker_other_ms"].append(t["process_ms"] - stages)
        slices["worker_process_ms"].append(t["process_ms"])
        slices["decide_and_reply_ms"].append((sent.sent_at + sent.elapsed_ms / 1000.0 - worker_done) * 1000.0)
        if announced and row.pk in announced:
            slices["announce_ms"].append((announced[row.pk] - worker_done) * 1000.0)
            slices["decision_to_announce_ms"].append((announced[row.pk] - row.decided_at.timestamp()) * 1000.0)
            slices["reply_ms"].append((sent.sent_at + sent.elapsed_ms / 1000.0 - announced[row.pk]) * 1000.0)
        slices["end_to_end_ms"].append(sent.elapsed_ms)
    return {name: median(values) for name, values in slices.items() if values}


def decision_write_ms(device_token: str, repeats: int = 100) -> dict[str, float]:
    """``checkin_decide`` (row lock, UPDATE, chained audit INSERT, COMMIT) timed on the bench database."""
    from django.utils import timezone

    from verification import selectors, services
    from verification.models import CheckIn

    device = selectors.device_by_token(raw_token=device_token)
    samples = []
    for _ in range(repeats):
        row = CheckIn.objects.create(device=device, claimed_external_id=PERSON, status=CheckIn.Status.PROCESSING,
                                     queued_at=timezone.now(), started_at=timezone.now(), attempts=1)
        start = time.perf_counter()
        services.checkin_decide(checkin_id=row.pk, decision=1, reason="", score=0.9, threshold=0.5,
                                model_version="bench", timings={"process_ms": 0.0})
        samples.append((time.perf_counter() - start) * 1000.0)
    return {"median_ms": median(samples), **percentiles(samples, (95,)), "n": repeats}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="measured check-ins (default 200)")
    parser.add_argument("--warmup", type=int, default=5, help="check-ins posted first to warm the web processes")
    parser.add_argument("--threads", type=int, default=None, help="WORKER_TF_THREADS for the worker (default: auto)")
    parser.add_argument("--code-dir", type=Path, default=REPO_ROOT, help="run web and worker from this checkout")
    parser.add_argument("--label", default="", help="suffix of the results file (e.g. 'before')")
    args = parser.parse_args()
    if args.n < 1 or args.warmup < 1:
        parser.error("--n and --warmup must be at least 1")

    results: dict = {"benchmark": "door_latency", "machine": machine(), "code_dir": str(args.code_dir),
                     "worker": {"processes": 1, "WORKER_TF_THREADS": args.threads or "auto"},
                     "snapshot": f"640x480 JPEG q90 of {PROBE_PHOTO.name} (fixture) on a plain background"}
    with Stack("door", code_dir=args.code_dir) as stack:
        token = create_device("bench-door")
        stack.start_worker(concurrency=1, tf_threads=args.threads, label="door")
        enrol(PERSON, reference_frames(2))
        snapshots = probe_snapshots()
        results["snapshot_bytes"] = len(snapshots[0])
        session = requests.Session()

        # Warm the web processes (their first request imports the API stack), then give the door a
        # fresh worker process: its first check-in shows what the worker's warm-up leaves to the door.
        for _ in range(args.warmup):
            post_checkin(session, stack.url, token, person=PERSON, snapshot=snapshots[0], wait=10)
        stack.stop_workers()
        stack.start_worker(concurrency=1, tf_threads=args.threads, label="door-fresh")
        first = post_checkin(session, stack.url, token, person=PERSON, snapshot=snapshots[0], wait=10)
        results["first_checkin_of_fresh_worker_ms"] = round(first.elapsed_ms, 1)
        results["first_checkin_breakdown_ms"] = breakdown([first.body["id"]], {first.body["id"]: first})

        posted = {}
        listener = AnnouncementListener(stack.env["CELERY_BROKER_URL"])  # CHECKIN_WAKEUP_URL's default
        for i in range(args.n):
            answer = post_checkin(session, stack.url, token, person=PERSON, snapshot=snapshots[i % len(snapshots)],
                                  wait=10)
            if answer.status != 200:
                raise RuntimeError(f"no decision within wait=10: {answer.body}")
            posted[answer.body["id"]] = answer
        ids = list(posted)
        latencies = [p.elapsed_ms for p in posted.values()]
        decisions = [p.body["decision"] for p in posted.values()]
        results["n"] = args.n
        results["end_to_end_ms"] = {**percentiles(latencies), "mean": round(sum(latencies) / len(latencies), 1)}
        results["decisions"] = {"1": decisions.count(1), "0": decisions.count(0)}
        time.sleep(0.5)  # the last announcements reach the listener's thread
        listener.close()
        results["breakdown_median_ms"] = breakdown(ids, posted, listener.seen)

        # The submit path alone (202 at once), then the read path, then the decision write.
        submits = [post_checkin(session, stack.url, token, person=PERSON, snapshot=snapshots[0], wait=0)
                   for _ in range(50)]
        wait_all_final([s.body["id"] for s in submits], timeout=300)
        results["post_wait0_ms"] = {"median": median(s.elapsed_ms for s in submits),
                                    **percentiles([s.elapsed_ms for s in submits], (95,))}
        reads = []
        for checkin_id in ids[:100]:
            start = time.perf_counter()
            response = session.get(f"{stack.url}/api/v1/checkins/{checkin_id}/",
                                   headers={"Authorization": f"Token {token}"}, timeout=30)
            reads.append((time.perf_counter() - start) * 1000.0)
            response.raise_for_status()
        results["get_checkin_ms"] = {"median": median(reads), **percentiles(reads, (95,))}
        stack.stop_workers()
        results["decision_db_write_ms"] = decision_write_ms(token)

    e2e = results["end_to_end_ms"]
    results["targets"] = {"p50<=150": e2e["p50"] <= 150, "p95<=300": e2e["p95"] <= 300}
    path = write_results("door_latency" + (f"-{args.label}" if args.label else ""), results)
    print(f"door latency over {args.n} check-ins (1 worker, threads {args.threads or 'auto'}): "
          f"p50 {e2e['p50']} ms  p95 {e2e['p95']} ms  p99 {e2e['p99']} ms   "
          f"decisions 1/0: {results['decisions']['1']}/{results['decisions']['0']}")
    print("median breakdown (ms):")
    for name, value in results["breakdown_median_ms"].items():
        print(f"  {name:<22} {value:8.1f}")
    print(f"decision DB write alone: median {results['decision_db_write_ms']['median_ms']} ms;  "
          f"POST wait=0: median {results['post_wait0_ms']['median']} ms;  "
          f"GET check-in: median {results['get_checkin_ms']['median']} ms")
    slowest = max((v, k) for k, v in results["first_checkin_breakdown_ms"].items()
                  if k not in ("end_to_end_ms", "worker_process_ms"))
    print(f"first check-in of a fresh worker process: {results['first_checkin_of_fresh_worker_ms']} ms "
          f"(worker {results['first_checkin_breakdown_ms']['worker_process_ms']} ms; "
          f"largest slice: {slowest[1]} {slowest[0]} ms)")
    print(f"targets met: {results['targets']}   -> {path.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
