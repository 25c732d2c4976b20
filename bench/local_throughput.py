"""Local engine throughput: a naive one-page-at-a-time loop vs the pipelined engine, on the same pages.

Three ways over the same page images, each warmed up on one page first (model load excluded):

- `naive rapidocr`: `RapidOCR()` with its defaults, called on one image path after another;
- `naive, our decoding`: our RapidOCR backend (with word-space recovery), one page at a time, one
  pipeline using every core — the same OCR work as the engine, without its execution strategy;
- `pipelined`: `LocalInference(device="cpu").infer(...)` — images decoded on background threads
  while the model works, one single-threaded pipeline (OpenVINO by default) per core with pages in flight
  in parallel, each line crop recognised in its own call (faster than batches of crops there).

The runs are interleaved for `--rounds` rounds and each figure is the median round (the best
round flattered whichever run last had the machine to itself: one slow baseline round made a
1.63× claim out of 1.44×); every round's rate is recorded beside it. Pages come from
`data/sample/images` when it exists, else a small corpus is generated. Only the CPU engine is
timed: the GPU (transformers VLM) figures are reported as not measured.

    python bench/local_throughput.py [--pages 40] [--rounds 2] [--images DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._results import record  # noqa: E402
from ocr_assets.core import PageRequest, PageSuccess, PromptIdentity  # noqa: E402
from ocr_assets.engines.local.devices import cuda_device_count  # noqa: E402
from ocr_assets.engines.local.prefetch import prepare_page  # noqa: E402
from ocr_assets.engines.local.rapidocr_engine import RapidOcrBackend, default_parallelism  # noqa: E402
from ocr_assets.engines.local.runner import LocalInference  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MAX_SIDE = 2000


def page_images(images: Path | None, count: int) -> list[Path]:
    root = images or REPO / "data" / "sample" / "images"
    found = sorted(root.rglob("*.jpg")) if root.is_dir() else []
    if len(found) < count:
        from ocr_assets.sample_corpus import generate_corpus

        out = Path(tempfile.mkdtemp(prefix="local-throughput-"))
        generate_corpus(out, books=max(1, count // 6 + 1), pages=6, seed=7)
        found = sorted((out / "images").rglob("*.jpg"))
    # Spread the sample over books (every k-th page) rather than one book's first pages.
    step = max(1, len(found) // count)
    return found[::step][:count]


def requests_for(paths: list[Path]) -> list[PageRequest]:
    identity = PromptIdentity(name="bench", version="0", vars_hash="")
    return [
        PageRequest(key=f"bench:{i}", book="bench", page=i, image_path=path, prompt="", prompt_identity=identity)
        for i, path in enumerate(paths)
    ]


def naive_rapidocr(paths: list[Path]):
    from rapidocr_onnxruntime import RapidOCR

    engine = RapidOCR()
    engine(str(paths[0]))

    def run() -> int:
        return sum(1 for path in paths if engine(str(path))[0] is not None)

    return run


def naive_our_decoding(requests: list[PageRequest]):
    backend = RapidOcrBackend(parallel_pages=1, threads_per_page=os.cpu_count())
    backend.run_batch([prepare_page(requests[0], MAX_SIDE)])

    def run() -> int:
        outcomes = [backend.run_batch([prepare_page(r, MAX_SIDE)])[0] for r in requests]
        return sum(isinstance(o, PageSuccess) for o in outcomes)

    return run


def pipelined(requests: list[PageRequest]):
    engine = LocalInference(device="cpu", max_side=MAX_SIDE)
    engine.infer(requests[:1])

    def run() -> int:
        return sum(isinstance(o, PageSuccess) for o in engine.infer(requests))

    return run


def load_average() -> str:
    try:
        return ", ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--images", type=Path, default=None, help="folder of page images (default: the sample corpus)")
    args = parser.parse_args()

    paths = page_images(args.images, args.pages)
    requests = requests_for(paths)
    load_before = load_average()
    runners = {
        "naive rapidocr": naive_rapidocr(paths),
        "naive, our decoding": naive_our_decoding(requests),
        "pipelined": pipelined(requests),
    }
    rates: dict[str, list[float]] = {name: [] for name in runners}
    for round_no in range(1, args.rounds + 1):
        for name, run in runners.items():
            started = time.perf_counter()
            answered = run()
            seconds = time.perf_counter() - started
            rate = len(paths) / seconds
            print(f"round {round_no}: {name}: {len(paths)} pages ({answered} with text) in {seconds:.1f} s "
                  f"= {rate:.3f} pages/s", flush=True)
            rates[name].append(rate)
    median = {name: statistics.median(values) for name, values in rates.items()}
    speedup = median["pipelined"] / median["naive rapidocr"]
    parallel, threads = default_parallelism()
    cuda = cuda_device_count()
    gpu = ("not measured: no CUDA device on this machine" if cuda == 0 else
           f"not measured: this bench times the CPU engine only ({cuda} CUDA device(s) idle)")
    record(
        f"local throughput: RapidOCR on {len(paths)} pages, {os.cpu_count()} cores",
        {
            "pages": f"{len(paths)} from {paths[0].parents[3] if len(paths[0].parents) > 3 else paths[0].parent}",
            **{f"{name} (pages/s, median)": f"{median[name]:.3f} (rounds: {', '.join(f'{r:.3f}' for r in rates[name])})"
               for name in runners},
            "speedup vs naive rapidocr": f"{speedup:.2f}× (target ≥ 1.5×)" + ("" if speedup >= 1.5 else " — NOT met"),
            "speedup vs naive, same decoding": f"{median['pipelined'] / median['naive, our decoding']:.2f}×",
            "pipelined setup": f"{parallel} pages in flight × {threads} runtime thread(s), one line crop "
                               f"per recogniser call, images decoded ahead on background threads",
            "GPU (transformers VLM) pages/s": gpu,
            "load average before / after": f"{load_before} / {load_average()}",
        },
        notes=f"median of {args.rounds} interleaved rounds each; model load and one warm-up page excluded",
    )


if __name__ == "__main__":
    main()
