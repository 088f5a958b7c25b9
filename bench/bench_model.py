"""Model benchmark: detection+alignment per 640x480 frame, embedding per face, scoring a probe.

Also the coarse face search (``ml.align.coarse_search_batch``) of 1, 4 and 8 door frames in one call,
per frame: what a worker that takes waiting check-ins along saves on detection (issue 12).

    .venv/bin/python bench/bench_model.py [--model DIR] [--repeats N] [--threads N]

Prints medians (and p90) in milliseconds, then the process's resident memory. Targets (issue 2): embedding <= 15 ms per face at
batch 1; scoring one probe against 1,000 cached references <= 5 ms.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Callable

import numpy as np

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "faces" / "person_a_1.jpg"


def _timings(fn: Callable[[], object], repeats: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000.0)
    return out


def _line(label: str, samples: list[float], per: int = 1) -> None:
    values = sorted(s / per for s in samples)
    p90 = values[min(len(values) - 1, int(0.9 * len(values)))]
    print(f"{label:<48} median {statistics.median(values):8.3f} ms   p90 {p90:8.3f} ms   (n={len(values)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model directory (default: the shipped model)")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1, help="threads per network (default 1, as a worker of one pool process per core)")
    args = parser.parse_args()

    import ml

    import cv2

    from ml.lite import set_threads

    set_threads(args.threads)
    cv2.setNumThreads(args.threads)

    face_photo = ml.decode_image(FIXTURE.read_bytes())
    frame = np.full((480, 640, 3), 110, dtype=np.uint8)
    frame[115:365, 195:445] = face_photo  # a 640x480 door-camera frame with one face
    model = ml.load_model(args.model)
    model.warm_up()
    print(f"model {model.version} on {model.runtime}  threshold {model.threshold:.4f}  embedding dim "
          f"{model.embedding_dim}  flip-average {model.flip_average}  threads {args.threads}")

    _line("detect + align, 640x480 frame", _timings(lambda: ml.extract_face(frame), max(10, args.repeats // 2)))
    from ml import align

    shifted = [np.roll(frame, 8 * i, axis=1) for i in range(8)]  # different frames of one size
    for count in (1, 4, 8):
        _line(f"coarse search, {count} frame(s) in one call (per frame)",
              _timings(lambda: align.coarse_search_batch(shifted[:count]), max(10, args.repeats // 2)), per=count)
    face = ml.extract_face(frame)
    batch1 = face[None]
    batch32 = np.repeat(batch1, 32, axis=0)
    _line("embed, batch 1 (per face)", _timings(lambda: model.embed(batch1), args.repeats))
    _line("embed, batch 32 (per face)", _timings(lambda: model.embed(batch32), max(10, args.repeats // 5)), per=32)
    probe = model.embed(batch1)[0]
    rng = np.random.default_rng(0)
    for count in (1, 10, 1000):
        references = rng.normal(size=(count, model.embedding_dim)).astype(np.float32)
        references /= np.linalg.norm(references, axis=1, keepdims=True)
        _line(f"score probe vs {count} cached references", _timings(lambda: model.score(probe, references), args.repeats * 4))
    print(_memory())


def _memory() -> str:
    """This process's resident memory with the model and detector loaded and run: libraries' pages
    (file-backed, shared between the processes of one host) and its own."""
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    mib = {key: int(status[key].split()[0]) / 1024 for key in ("VmRSS", "RssFile", "RssAnon")}
    return f"process RSS {mib['VmRSS']:.0f} MiB: {mib['RssFile']:.0f} MiB file-backed (libraries), {mib['RssAnon']:.0f} MiB its own"


if __name__ == "__main__":
    main()
