"""Burst throughput: check-ins from 20 concurrent doors, with 1, 2, 4 worker processes.

    .venv/bin/python bench/burst.py [--n 500] [--clients 20] [--configs 1x2,2x1] [--wait 0]
                                    [--code-dir DIR] [--compare REF] [--label NAME]

Each configuration ``PxT`` is P prefork processes in one ``celery worker`` with WORKER_TF_THREADS=T
(T=0: the automatic split of the cores); ``PxT:hosts`` is P ``celery worker`` instances of one process
each, each confined to its own CPUs (``taskset``), as P containers with CPU limits or P hosts would be.

``--wait 0`` (the default): the doors post as fast as the API takes them and are answered 202 at once;
then the script waits for the queue to drain and reads the database. ``--wait 10`` ("twenty doors at
once", issue 12): each door posts back-to-back, waiting up to 10 s for its decision in the answer, as a
door does; the script reports what the doors waited (p50/p95/p99), how many were answered 200 with their
decision within the wait, and the decisions per second.

Either way it prints check-ins decided per second, p95 time to decision (client send -> ``decided_at``),
checks that each of the N has exactly one decision in the table and exactly one decision row in the audit
log, the resident memory of every worker process, the load average before and after each configuration,
and the throughput ratio of each configuration to the first. ``--compare REF`` first runs the same
configurations with the web and worker processes of commit REF (``git archive``; its own compose web
command), in a subprocess, and adds the after/before ratios: both measured in one run, on one machine
state. Writes bench/results/burst[-LABEL].json.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
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
from _stack import REPO_ROOT, Stack, child_pids, cpu_ticks, memory_mib, rss_mib

PERSON = "burst-a"


def parse_configs(text: str) -> list[tuple[int, int, bool]]:
    """``"1x2,2x1,2x1:hosts"`` -> [(1, 2, False), (2, 1, False), (2, 1, True)]: worker processes x TensorFlow
    threads (0 = automatic), and whether each process is a worker of its own on its own CPUs."""
    configs = []
    for part in text.split(","):
        spec, _, mode = part.strip().lower().partition(":")
        if mode not in ("", "hosts"):
            raise ValueError(f"configuration {part!r}: the only suffix is ':hosts'")
        try:
            processes, threads = (int(value) for value in spec.split("x"))
        except ValueError:
            raise ValueError(f"configuration {part!r} is not PROCESSESxTHREADS[:hosts], e.g. 2x1") from None
        if processes < 1 or threads < 0:
            raise ValueError(f"configuration {part!r}: at least 1 process and 0 or more threads")
        configs.append((processes, threads, mode == "hosts"))
    if not configs:
        raise ValueError("no configuration given")
    return configs


def config_name(processes: int, threads: int, hosts: bool) -> str:
    return f"{processes}x{threads or 'auto'}" + (":hosts" if hosts else "")


def start_workers(stack: Stack, processes: int, threads: int, hosts: bool) -> None:
    if not hosts:
        stack.start_worker(concurrency=processes, tf_threads=threads or None, label=f"w{processes}x{threads}")
        return
    cpus = sorted(os.sched_getaffinity(0))
    share = max(1, len(cpus) // processes)
    for index in range(processes):
        mine = cpus[(index * share) % len(cpus):][:share] or cpus[:share]
        stack.start_worker(concurrency=1, tf_threads=threads or None, label=f"host{index}",
                           cpus=",".join(str(c) for c in mine))


def cpu_snapshot(stack: Stack) -> dict[str, int]:
    """CPU ticks used so far by the web processes and by the worker pool processes (the model's work).

    CPU time, unlike wall time, barely depends on what else the machine runs: divided by the check-ins it
    says what one check-in costs each tier, and 1000 / worker ms = decisions/s one worker core can make."""
    web = [stack.web.pid, *child_pids(stack.web.pid)]
    workers = [pid for worker in stack.workers for pid in (worker.pid, *child_pids(worker.pid))]
    return {"web": sum(cpu_ticks(pid) for pid in web), "workers": sum(cpu_ticks(pid) for pid in workers)}


def cpu_ms_per_checkin(before: dict[str, int], after: dict[str, int], n: int) -> dict[str, float]:
    tick_ms = 1000.0 / os.sysconf("SC_CLK_TCK")
    return {tier: round((after[tier] - before[tier]) * tick_ms / n, 1) for tier in before}


def worker_rss(stack: Stack) -> dict:
    """Memory (MiB) of every worker pool process (the model's home: RSS, PSS, USS) and each worker's main process."""
    pool = [memory_mib(pid) for worker in stack.workers for pid in child_pids(worker.pid)]
    return {"pool_processes_mib": pool, "pool_max_mib": max((m["rss"] for m in pool), default=None),
            "pool_max_uss_mib": max((m["uss"] for m in pool), default=None),
            "main_processes_mib": [rss_mib(worker.pid) for worker in stack.workers]}


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


def run_doors_waiting(stack: Stack, tokens: list[str], *, n: int, snapshots: list[bytes], wait: float,
                      person: str = PERSON) -> dict:
    """Each door posts back-to-back with ``wait``: what the doors waited, and whether each got its decision."""
    from verification.models import CheckIn

    def door(client: int) -> list:
        session = requests.Session()
        return [post_checkin(session, stack.url, tokens[client], person=person,
                             snapshot=snapshots[i % len(snapshots)], wait=wait)
                for i in range(client, n, len(tokens))]

    started = time.time()
    with ThreadPoolExecutor(max_workers=len(tokens)) as pool:
        posted = [answer for answers in pool.map(door, range(len(tokens))) for answer in answers]
    finished = time.time()
    ids = [p.body["id"] for p in posted]
    answered = [p for p in posted if p.status == 200 and p.body.get("status") in ("decided", "failed")]
    wait_all_final(ids, timeout=1800)  # the ones answered 202 still get decided: counted, never lost
    rows = list(CheckIn.objects.filter(pk__in=ids).values_list("pk", "decided_at", "timings"))
    sent_at = {p.body["id"]: p.sent_at for p in posted}
    decided_at = {pk: d.timestamp() for pk, d, _ in rows}
    # The wait's own share: decision committed -> the door has its answer (one host, one clock).
    reply_after_decision = [(p.sent_at + p.elapsed_ms / 1000.0 - decided_at[p.body["id"]]) * 1000.0 for p in answered]
    latencies = [p.elapsed_ms for p in posted]
    return {
        "n": n,
        "wait_s": wait,
        "door_wait_ms": {**percentiles(latencies, (50, 95, 99)), "max": round(max(latencies), 1)},
        "answered_200_with_decision": len(answered),
        "answered_within_wait": sum(1 for p in answered if p.elapsed_ms <= wait * 1000.0),
        "answered_202": sum(1 for p in posted if p.status == 202),
        "decided_per_s": round(n / (finished - started), 2),
        "time_to_decision_ms": percentiles([(d.timestamp() - sent_at[pk]) * 1000.0 for pk, d, _ in rows], (50, 95)),
        "reply_after_decision_ms": percentiles(reply_after_decision, (50, 95)) if answered else None,
        "worker_process_ms_median": median(t["process_ms"] for _, _, t in rows if t and "process_ms" in t),
        "stage_ms_median": {stage: median([t[stage] for _, _, t in rows if t and stage in t])
                            for stage in ("queue_ms", "decode_ms", "detect_ms", "embed_ms", "score_ms")},
        "exactly_one_decision": exactly_one_decision(ids),
    }


def run_before(ref: str, argv: list[str]) -> dict:
    """The same benchmark with the web and worker processes of ``ref``, in a subprocess (one Django per process)."""
    with tempfile.TemporaryDirectory(prefix="bench-burst-before-") as tree:
        archive = subprocess.run(["git", "archive", ref], cwd=REPO_ROOT, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tree], input=archive, check=True)
        label = f"before-{os.getpid()}"
        subprocess.run([sys.executable, str(Path(__file__).resolve()), *argv, "--code-dir", tree, "--label", label],
                       check=True)
        path = Path(__file__).resolve().parent / "results" / f"burst-{label}.json"
        results = json.loads(path.read_text())
        path.unlink()
    results["ref"] = ref
    return results


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
    parser.add_argument("--configs", default="1x2,2x1", help="PROCESSESxTHREADS[:hosts] list (default 1x2,2x1)")
    parser.add_argument("--wait", type=float, default=0.0, help="the doors' wait (0: post and go; 10: wait for it)")
    parser.add_argument("--unknown-person", action="store_true",
                        help="doors claim a person nobody enrolled: decided 0 before any face work, so the run "
                             "measures the web tier, the queue and the wait rather than the model")
    parser.add_argument("--code-dir", type=Path, default=REPO_ROOT)
    parser.add_argument("--compare", metavar="REF", help="first run the same with commit REF's web and worker")
    parser.add_argument("--label", default="")
    args = parser.parse_args()
    try:
        configs = parse_configs(args.configs)
    except ValueError as exc:
        parser.error(str(exc))
    if args.n < 1 or args.clients < 1 or not 0 <= args.wait <= 10:
        parser.error("--n and --clients must be at least 1, --wait 0-10")
    before = None
    if args.compare:
        before = run_before(args.compare, ["--n", str(args.n), "--clients", str(args.clients),
                                           "--configs", args.configs, "--wait", str(args.wait)]
                            + (["--unknown-person"] if args.unknown_person else []))

    results: dict = {"benchmark": "burst", "machine": machine(), "code_dir": str(args.code_dir),
                     "clients": args.clients, "wait_s": args.wait, "unknown_person": args.unknown_person, "runs": []}
    with Stack("burst", code_dir=args.code_dir) as stack:
        results["web_command"] = stack.web.command
        tokens = [create_device(f"bench-door-{i}") for i in range(args.clients)]
        snapshots = probe_snapshots()
        for processes, threads, hosts in configs:
            load_start = round(os.getloadavg()[0], 2)
            start_workers(stack, processes, threads, hosts)
            if not results["runs"]:
                enrol(PERSON, reference_frames(2))
            warm(stack, tokens[0], snapshots[0], 4 * processes)
            cpu_start = cpu_snapshot(stack)
            if args.wait > 0:
                run = run_doors_waiting(stack, tokens, n=args.n, snapshots=snapshots, wait=args.wait,
                                        person="nobody-enrolled" if args.unknown_person else PERSON)
            else:
                run = run_burst(stack, tokens, n=args.n, snapshots=snapshots)
            run["cpu_ms_per_checkin"] = cpu_ms_per_checkin(cpu_start, cpu_snapshot(stack), args.n)
            run.update(config=config_name(processes, threads, hosts), processes=processes,
                       tf_threads=threads or "auto", hosts=hosts, worker_rss=worker_rss(stack),
                       load_avg_1m={"start": load_start, "end": round(os.getloadavg()[0], 2)})
            results["runs"].append(run)
            stack.stop_workers()
            line = f"{run['config']}: {run['decided_per_s']} decided/s"
            if args.wait > 0:
                line += (f", doors waited p50 {run['door_wait_ms']['p50']} ms p95 {run['door_wait_ms']['p95']} ms "
                         f"(decision -> answer p50 {(run['reply_after_decision_ms'] or {}).get('p50')} ms), "
                         f"{run['answered_within_wait']}/{args.n} answered with the decision within the wait")
            else:
                line += (f", drained in {run['time_to_drain_s']} s, time to decision p50 "
                         f"{run['time_to_decision_ms']['p50']} ms p95 {run['time_to_decision_ms']['p95']} ms")
            line += f", CPU per check-in {run['cpu_ms_per_checkin']} ms"
            print(f"{line}, exactly one decision each: {run['exactly_one_decision']['ok']} "
                  f"({run['exactly_one_decision']['decided']}/{args.n} decided), worker RSS max "
                  f"{run['worker_rss']['pool_max_mib']} MiB (private {run['worker_rss']['pool_max_uss_mib']} MiB), load {run['load_avg_1m']}", flush=True)

    base = results["runs"][0]["decided_per_s"]
    results["throughput_ratio_to_first"] = {r["config"]: round(r["decided_per_s"] / base, 2) for r in results["runs"]}
    if before is not None:
        results["before"] = before
        old = {r["config"]: r for r in before["runs"]}
        results["after_over_before"] = {
            r["config"]: {
                "decided_per_s": round(r["decided_per_s"] / old[r["config"]]["decided_per_s"], 2),
                **{f"cpu_ms_{tier}": round(ms / old[r["config"]]["cpu_ms_per_checkin"][tier], 2)
                   for tier, ms in r["cpu_ms_per_checkin"].items() if old[r["config"]]["cpu_ms_per_checkin"][tier]},
                **({"door_wait_p50": round(r["door_wait_ms"]["p50"] / old[r["config"]]["door_wait_ms"]["p50"], 2),
                    "reply_after_decision_p50": round(r["reply_after_decision_ms"]["p50"]
                                                      / old[r["config"]]["reply_after_decision_ms"]["p50"], 2),
                    "door_wait_p95": round(r["door_wait_ms"]["p95"] / old[r["config"]]["door_wait_ms"]["p95"], 2)}
                   if args.wait > 0 else {}),
            }
            for r in results["runs"] if r["config"] in old
        }
        print(f"after / before ({args.compare}): {results['after_over_before']}")
    path = write_results("burst" + (f"-{args.label}" if args.label else ""), results)
    print(f"throughput ratio to {results['runs'][0]['config']}: {results['throughput_ratio_to_first']}"
          f"   -> {path.relative_to(REPO_ROOT)}")
    if not all(r["exactly_one_decision"]["ok"] for r in results["runs"]):
        raise SystemExit("FAILED: some check-in does not have exactly one decision (see the JSON)")


if __name__ == "__main__":
    main()
