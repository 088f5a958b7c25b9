"""Burst throughput: 500 check-ins from 20 concurrent doors, with 1 and then 2 worker processes.

    .venv/bin/python bench/burst.py [--n 500] [--clients 20] [--configs 1x2,2x1] [--code-dir DIR] [--label NAME]

Each configuration ``PxT`` is P prefork processes in one ``celery worker`` with WORKER_TF_THREADS=T
(T=0: the automatic split of the cores). The doors post with ``wait=0`` (the API answers 202 as soon
as the row is stored), as fast as the API takes them; then the script waits for the queue to drain
and reads the database. Prints check-ins decided per second, time to drain, p95 time to decision
(client send -> ``decided_at``), checks that each of the N has exactly one decision in the table and
exactly one decision row in the audit log, and the throughput ratio of each configuration to the
first. Writes bench/results/burst[-LABEL].json.
"""
from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from _scenario import (
    create_device,
    enrol,
    exactly_one_decision,
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

PERSON = "burst-a"


def parse_configs(text: str) -> list[tuple[int, int]]:
    """``"1x2,2x1"`` -> [(1, 2), (2, 1)]: worker processes x TensorFlow threads (0 = automatic)."""
    configs = []
    for part in text.split(","):
        try:
            processes, threads = (int(value) for value in part.strip().lower().split("x"))
        except ValueError:
            raise ValueError(f"configuration {part!r} is not PROCESSESxTHREADS, e.g. 2x1") from None
        if processes < 1 or threads < 0:
            raise ValueError(f"configuration {part!r}: at least 1 process and 0 or more threads")
        configs.append((processes, threads))
    if not configs:
        raise ValueError("no configuration given")
    return configs


def run_burst(stack: Stack, tokens: list[str], *, n: int, snapshots: list[bytes]) -> dict:
    from verification.models import CheckIn

    def door(client: int) -> list:
        session = requests.Session()
        mine = range(client, n, len(tokens))
        return [post_checkin(session, stack.url, tokens[client], person=PERSON,
                             snapshot=snapshots[i % len(snapshots)], wait=0) for i in mine]

    started = time.time()
    with ThreadPoolExecutor(max_workers=len(tokens)) as pool:
        posted = [answer for answers in pool.map(door, range(len(tokens))) for answer in answers]
    all_accepted = time.time()
    sent_at = {p.body["id"]: p.sent_at for p in posted}
    ids = list(sent_at)
    wait_all_final(ids, timeout=1800)
    rows = list(CheckIn.objects.filter(pk__in=ids).values_list("pk", "decided_at", "timings"))
    last_decided = max(decided.timestamp() for _, decided, _ in rows)
    to_decision = [(decided.timestamp() - sent_at[pk]) * 1000.0 for pk, decided, _ in rows]
    return {
        "n": n,
        "post_ms": {"median": median(p.elapsed_ms for p in posted), **percentiles([p.elapsed_ms for p in posted], (95,))},
        "all_accepted_after_s": round(all_accepted - started, 2),
        "time_to_drain_s": round(last_decided - started, 2),
        "decided_per_s": round(n / (last_decided - started), 2),
        "time_to_decision_ms": percentiles(to_decision, (50, 95, 99)),
        "worker_process_ms_median": median(t["process_ms"] for _, _, t in rows),
        "exactly_one_decision": exactly_one_decision(ids),
    }


def warm(stack: Stack, token: str, snapshot: bytes, count: int) -> None:
    """A few check-ins per process first, so the burst measures steady state, not process start."""
    session = requests.Session()
    ids = [post_checkin(session, stack.url, token, person=PERSON, snapshot=snapshot, wait=0).body["id"]
           for _ in range(count)]
    wait_all_final(ids, timeout=600)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--configs", default="1x2,2x1", help="PROCESSESxTHREADS list (default 1x2,2x1)")
    parser.add_argument("--code-dir", type=Path, default=REPO_ROOT)
    parser.add_argument("--label", default="")
    args = parser.parse_args()
    try:
        configs = parse_configs(args.configs)
    except ValueError as exc:
        parser.error(str(exc))
    if args.n < 1 or args.clients < 1:
        parser.error("--n and --clients must be at least 1")

    results: dict = {"benchmark": "burst", "machine": machine(), "code_dir": str(args.code_dir),
                     "clients": args.clients, "runs": []}
    with Stack("burst", code_dir=args.code_dir) as stack:
        tokens = [create_device(f"bench-door-{i}") for i in range(args.clients)]
        snapshots = probe_snapshots()
        for processes, threads in configs:
            stack.start_worker(concurrency=processes, tf_threads=threads or None, label=f"w{processes}x{threads}")
            if not results["runs"]:
                enrol(PERSON, reference_frames(2))
            warm(stack, tokens[0], snapshots[0], 4 * processes)
            run = run_burst(stack, tokens, n=args.n, snapshots=snapshots)
            run.update(processes=processes, tf_threads=threads or "auto")
            results["runs"].append(run)
            stack.stop_workers()
            print(f"{processes} process(es) x {threads or 'auto'} thread(s): {run['decided_per_s']} decided/s, "
                  f"drained in {run['time_to_drain_s']} s, time to decision p50 {run['time_to_decision_ms']['p50']} ms "
                  f"p95 {run['time_to_decision_ms']['p95']} ms, exactly one decision each: "
                  f"{run['exactly_one_decision']['ok']} ({run['exactly_one_decision']['decided']}/{args.n} decided)")

    base = results["runs"][0]["decided_per_s"]
    results["throughput_ratio_to_first"] = {
        f"{r['processes']}x{r['tf_threads']}": round(r["decided_per_s"] / base, 2) for r in results["runs"]
    }
    path = write_results("burst" + (f"-{args.label}" if args.label else ""), results)
    print(f"throughput ratio to {configs[0][0]}x{configs[0][1] or 'auto'}: {results['throughput_ratio_to_first']}"
          f"   -> {path.relative_to(REPO_ROOT)}")
    if not all(r["exactly_one_decision"]["ok"] for r in results["runs"]):
        raise SystemExit("FAILED: some check-in does not have exactly one decision (see the JSON)")


if __name__ == "__main__":
    main()
