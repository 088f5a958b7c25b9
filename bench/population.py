"""Enrolled population: verifying against 1, 10 and 50 references, and memory per process.

    .venv/bin/python bench/population.py [--n 60] [--sizes 1,10,50] [--code-dir DIR] [--label NAME]

One worker process, one person per size (enrolled from distinct frames of the same two photos),
check-ins posted with ``wait`` round-robin over the people so load drifts hit every size alike.
Prints the median end-to-end latency and worker processing time per size and their ratio to the
smallest size (target: within 10 %), then the resident memory (RSS) of each worker pool process
after the model is loaded (target <= 1 GB) and of the web processes, and whether any web process
has TensorFlow loaded (it must not). Writes bench/results/population[-LABEL].json.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import requests

from _scenario import (
    create_device,
    enrol,
    machine,
    median,
    percentiles,
    post_checkin,
    probe_snapshots,
    reference_frames,
    write_results,
)
from _stack import REPO_ROOT, Stack, child_pids, maps_tensorflow, rss_mib
from door_latency import breakdown


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(f"--sizes must be comma-separated integers, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise ValueError("--sizes needs at least one size, each 1 or more")
    return sizes


def memory(stack: Stack) -> dict:
    """RSS of every server process, and whether each has TensorFlow's library mapped."""
    worker_main = stack.workers[0].pid
    web_master = stack.web.pid
    pool = child_pids(worker_main)
    web_workers = child_pids(web_master)
    return {
        "worker_pool_processes": [{"rss_mib": rss_mib(pid), "tensorflow_loaded": maps_tensorflow(pid)} for pid in pool],
        "worker_main_process": {"rss_mib": rss_mib(worker_main), "tensorflow_loaded": maps_tensorflow(worker_main)},
        "web_master": {"rss_mib": rss_mib(web_master), "tensorflow_loaded": maps_tensorflow(web_master)},
        "web_workers": [{"rss_mib": rss_mib(pid), "tensorflow_loaded": maps_tensorflow(pid)} for pid in web_workers],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=60, help="check-ins per size (default 60)")
    parser.add_argument("--sizes", default="1,10,50", help="references per person (default 1,10,50)")
    parser.add_argument("--code-dir", type=Path, default=REPO_ROOT)
    parser.add_argument("--label", default="")
    args = parser.parse_args()
    try:
        sizes = parse_sizes(args.sizes)
    except ValueError as exc:
        parser.error(str(exc))
    if args.n < 1:
        parser.error("--n must be at least 1")

    results: dict = {"benchmark": "population", "machine": machine(), "code_dir": str(args.code_dir), "sizes": {}}
    with Stack("population", code_dir=args.code_dir) as stack:
        from verification.models import CheckIn  # Django is set up by the stack

        token = create_device("bench-door")
        stack.start_worker(concurrency=1, label="population")
        people = {}
        for size in sizes:
            start = time.perf_counter()
            enrol(f"pop-{size}", reference_frames(size))
            people[size] = f"pop-{size}"
            results["sizes"][size] = {"enrol_s": round(time.perf_counter() - start, 2)}
        snapshots = probe_snapshots()
        session = requests.Session()
        for size in sizes:  # warm-up, not counted
            post_checkin(session, stack.url, token, person=people[size], snapshot=snapshots[0], wait=10)
        posted: dict[int, list] = {size: [] for size in sizes}
        for i in range(args.n):
            for size in sizes:
                answer = post_checkin(session, stack.url, token, person=people[size],
                                      snapshot=snapshots[i % len(snapshots)], wait=10)
                if answer.status != 200:
                    raise RuntimeError(f"no decision within wait=10: {answer.body}")
                posted[size].append(answer)
        for size in sizes:
            ids = [p.body["id"] for p in posted[size]]
            timings = list(CheckIn.objects.filter(pk__in=ids).values_list("timings", flat=True))
            latencies = [p.elapsed_ms for p in posted[size]]
            results["sizes"][size].update(
                n=len(ids),
                decision_1=sum(1 for p in posted[size] if p.body["decision"] == 1),
                end_to_end_ms={"median": median(latencies), **percentiles(latencies, (95,))},
                worker_process_ms_median=median(t["process_ms"] for t in timings),
                score_ms_median=round(sorted(t["score_ms"] for t in timings)[len(timings) // 2], 3),
                breakdown_median_ms=breakdown(ids, {p.body["id"]: p for p in posted[size]}),
            )
        results["memory"] = memory(stack)

    smallest = results["sizes"][sizes[0]]
    for size in sizes:
        entry = results["sizes"][size]
        entry["end_to_end_ratio"] = round(entry["end_to_end_ms"]["median"] / smallest["end_to_end_ms"]["median"], 3)
        entry["worker_process_ratio"] = round(entry["worker_process_ms_median"] / smallest["worker_process_ms_median"], 3)
    mem = results["memory"]
    results["targets"] = {
        # The check-in's cost (the worker's processing) and what the door waits, which also carries
        # the API's polling step (a decision landing just after a poll waits for the next one).
        "worker_cost_same_within_10_percent": all(abs(results["sizes"][s]["worker_process_ratio"] - 1) <= 0.10
                                                  for s in sizes),
        "end_to_end_same_within_10_percent": all(abs(results["sizes"][s]["end_to_end_ratio"] - 1) <= 0.10
                                                 for s in sizes),
        "worker_rss<=1GB": all(p["rss_mib"] <= 1024 for p in mem["worker_pool_processes"]),
        "web_never_imports_tensorflow": not mem["web_master"]["tensorflow_loaded"]
        and not any(p["tensorflow_loaded"] for p in mem["web_workers"]),
    }
    path = write_results("population" + (f"-{args.label}" if args.label else ""), results)
    for size in sizes:
        entry = results["sizes"][size]
        print(f"{size:>3} reference(s): end-to-end median {entry['end_to_end_ms']['median']} ms "
              f"(x{entry['end_to_end_ratio']}), worker {entry['worker_process_ms_median']} ms "
              f"(x{entry['worker_process_ratio']}), score {entry['score_ms_median']} ms, "
              f"decision 1: {entry['decision_1']}/{entry['n']}, "
              f"decide+reply {entry['breakdown_median_ms']['decide_and_reply_ms']} ms")
    print("worker pool process RSS (MiB): " + ", ".join(str(p["rss_mib"]) for p in mem["worker_pool_processes"])
          + f"; worker main {mem['worker_main_process']['rss_mib']} MiB (TF loaded: "
          f"{mem['worker_main_process']['tensorflow_loaded']})")
    print(f"web RSS (MiB): master {mem['web_master']['rss_mib']}, workers "
          + ", ".join(str(p["rss_mib"]) for p in mem["web_workers"])
          + f"; TensorFlow in any web process: {not results['targets']['web_never_imports_tensorflow']}")
    print(f"targets met: {results['targets']}   -> {path.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
