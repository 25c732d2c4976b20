"""Cost of the Gemini output contract's knobs, on the sample corpus against the emulator's model-like mode.

1. Thinking budgets side by side: the same pages through gemini-batch with each `--budgets` value;
   tokens and $ per page from the cost ledger (thinking billed as output).
2. Context sources: `upstream_output` (pages wait for their upstream), `local_ocr` (a local OCR pass
   over each upstream image first) and `upstream_image` (the upstream image itself, downscaled, beside
   the page's own): input tokens and $ per page, makespan in waves, the local pass's time.

Input tokens are reported twice: as the emulator bills them (258 per image, chars / 4 for text) and
as the submitter estimates them for Gemini's tiling of the real page size (`metering.raw_estimate`),
which is what a real bill follows. The emulator's answers do not read the context (the echo
answerer names the page it is asked for), so accuracy across a page break cannot be measured here;
that needs a real model run (`ocr-assets eval --engine gemini-realtime`).

    python bench/contract_cost.py [--budgets 0 1024] [--contexts upstream_output local_ocr upstream_image]
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._results import record  # noqa: E402
from bench.makespan import time_context_pass  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample"


def write_settings(root: Path, base_url: str, *, context: str, budget: int | None, prompt: str) -> Path:
    data = {
        "engine": "gemini-batch",
        "paths": {"images_root": str(SAMPLE / "images"), "allow_list_root": str(SAMPLE / "allow_list"),
                  "output_root": str(root / "output"), "database": str(root / "state" / "store.duckdb"),
                  "ground_truth_root": str(SAMPLE / "ground_truth")},
        "prompt": {"registry_dir": str(REPO / "prompts"), "version": prompt},
        "model": {"generation": {"thinking_budget": budget}},
        "execution": {"max_attempts": 5},
        "gemini": {"base_url": base_url, "context_source": context, "retry_initial_wait_s": 0.1,
                   "retry_max_wait_s": 1.0, "hold_backoff_s": 0.5},
    }
    root.mkdir(parents=True, exist_ok=True)
    path = root / "ocr_assets.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def tiling_estimate(pipeline, log, context_side: int) -> float:
    """Mean input tokens per page as Gemini's tiling bills the real image sizes (uncalibrated: the
    submitter's calibration learns the emulator's flat 258 per image and would hide the difference)."""
    from PIL import Image

    from ocr_assets.engines.gemini.metering import raw_estimate

    first = {}
    for entry in log:
        first.setdefault(entry.key, entry)
    records = pipeline.store.get_many(list(first))
    total = 0
    for key, entry in first.items():
        with Image.open(records[key].image_path) as img:
            width, height = img.size
        scale = min(1.0, context_side / max(width, height))
        extra = [(round(width * scale), round(height * scale))] * (entry.images - 1)
        total += raw_estimate(entry.prompt, width, height, extra_images=extra)
    return total / max(1, len(first))


def run(root: Path, *, context: str, budget: int | None, latency: float, prompt: str) -> dict[str, float | str]:
    """The sample corpus through gemini-batch against a fresh model-like emulator; per-page figures."""
    from ocr_assets.engines.emulator import EmulatorConfig, EmulatorServer, make_answerer
    from ocr_assets.engines.factory import make_batch_client
    from ocr_assets.engines.gemini.context import provider_for
    from ocr_assets.engines.gemini.lifecycle import ENGINE
    from ocr_assets.engines.gemini.runner import run_batches
    from ocr_assets.pipeline import Pipeline, Progress
    from ocr_assets.plan import build_plan
    from ocr_assets.settings import load_settings

    shutil.rmtree(root, ignore_errors=True)
    config = EmulatorConfig(batch_latency_s=latency, inline_wait_s=0.5, model_like={"enabled": True})
    with EmulatorServer(config, answerer=make_answerer("echo")) as server:
        settings = load_settings(write_settings(root, server.url, context=context, budget=budget, prompt=prompt))
        pipeline = Pipeline(settings)
        build_plan(pipeline.store, settings.paths.images_root, settings.paths.allow_list_root)
        provider = provider_for(settings, pipeline.store)
        context_s = time_context_pass(provider)
        waves = [0]

        def on_tick(progress: Progress, seen=[0]) -> None:  # noqa: B006 - one run's counter
            if progress.submitted_batches > seen[0]:
                waves[0] += 1
                seen[0] = progress.submitted_batches

        summary = run_batches(pipeline, make_batch_client(pipeline), poll_interval=0.1, on_progress=on_tick,
                              provider=provider, timeout_s=900)
        ledger = pipeline.store.query(
            """SELECT count(DISTINCT key) AS pages, sum(prompt_tokens) AS prompt, sum(output_tokens) AS output,
                      sum(cost_usd) AS cost FROM cost_ledger WHERE engine = ?""", [ENGINE])[0]
        estimated = tiling_estimate(pipeline, server.state.request_log, settings.gemini.context_image_side)
        thoughts = sum(e.thoughts_tokens for e in server.state.request_log)
        violations = pipeline.store.query(
            "SELECT count(*) AS n FROM failure_log WHERE error_type = 'schema_violation'")[0]["n"]
        counts = pipeline.store.status_counts()
    pages = max(1, int(ledger["pages"] or 0))
    from ocr_assets.core import TokenUsage
    from ocr_assets.pricing import cost

    at_tiling = cost(TokenUsage(prompt_tokens=round(estimated), output_tokens=round((ledger["output"] or 0) / pages)),
                     settings.model, "batch")
    return {"at_tiling": at_tiling,
        "pages": pages, "prompt": (ledger["prompt"] or 0) / pages, "output": (ledger["output"] or 0) / pages,
        "thinking": thoughts / pages, "cost": (ledger["cost"] or 0) / pages,
        "estimated": estimated, "waves": waves[0], "makespan_s": summary.elapsed_s,
        "context_s": context_s[0], "violations": int(violations),
        "statuses": ", ".join(f"{k} {v}" for k, v in sorted(counts.items())), "stopped": summary.stopped,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budgets", type=int, nargs="+", default=[0, 1024])
    parser.add_argument("--contexts", nargs="+", default=["upstream_output", "local_ocr", "upstream_image"],
                        choices=["upstream_output", "local_ocr", "upstream_image"])
    parser.add_argument("--latency", type=float, default=0.5, help="emulator batch latency (s)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/ocr_assets_contract_cost"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.pop("GEMINI_API_KEY", None)  # the loopback emulator needs none; never send a real one
    figures: dict[str, object] = {"corpus": f"data/sample ({sum(1 for _ in (SAMPLE / 'images').rglob('*.jpg'))} "
                                            "pages), gemini-batch prices, emulator model-like mode, echo answerer"}
    load_before = os.getloadavg()[0]
    budget_runs = {b: run(args.workdir / f"budget{b}", context="upstream_output", budget=b, latency=args.latency,
                          prompt="v1.2") for b in args.budgets}
    figures["thinking budgets side by side ($ per page, batch)"] = " | ".join(
        f"budget {b}: ${r['cost']:.7f} ({r['prompt']:.0f} in + {r['output']:.0f} out of which "
        f"{r['thinking']:.0f} thinking tokens/page; {r['violations']} schema violations; {r['statuses']})"
        for b, r in budget_runs.items())
    low, high = budget_runs[min(args.budgets)], budget_runs[max(args.budgets)]
    figures["cost ratio, highest / lowest budget"] = f"{high['cost'] / max(1e-12, low['cost']):.2f}x"
    for context in args.contexts:
        r = run(args.workdir / context, context=context, budget=min(args.budgets), latency=args.latency,
                prompt="v1.2")
        figures[f"context {context}"] = (
            f"{r['prompt']:.0f} input tokens/page billed by the emulator (${r['cost']:.7f}/page), "
            f"{r['estimated']:.0f} at Gemini's tiling of the real page size (${r['at_tiling']:.7f}/page); "
            f"{r['waves']} waves, makespan {r['makespan_s']:.1f} s"
            + (f" (local OCR context pass {r['context_s']:.1f} s)" if context == "local_ocr" else "")
            + f"; {r['violations']} schema violations; {r['statuses']}"
            + ("" if r["stopped"] == "done" else f"; STOPPED: {r['stopped']}"))
    figures["load average (1 min) before / after"] = f"{load_before:.2f} / {os.getloadavg()[0]:.2f}"
    shutil.rmtree(args.workdir, ignore_errors=True)
    record("contract cost: thinking budgets and context sources (sample corpus, emulator model-like mode)", figures,
           notes="per-page figures from the cost ledger (thinking tokens billed as output, batch = 50% of list); "
                 "a wave = a run_batches tick that created at least one batch; the host's 2 cores are shared with "
                 "other engineers, so seconds move with the load (waves and tokens do not); accuracy across page "
                 "breaks is not measurable here (the emulator's answers ignore the context)")


if __name__ == "__main__":
    main()
