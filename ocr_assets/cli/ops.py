"""CLI: operate the record store and compare prompts.

`failures`, `failures-export`, `retry`, `reset`, `show`, `inferences`, `prompt show`, `eval`.
The logic lives in `ocr_assets.operations` and `ocr_assets.evaluation`; these commands print.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.markup import escape
from rich.table import Table

from ocr_assets import operations as ops
from ocr_assets.cli.common import ConfigOption, console, err_console, friendly_errors, get_settings
from ocr_assets.pipeline import open_store
from ocr_assets.prompts import PromptError, PromptRegistry

prompt_app = typer.Typer(help="Inspect prompts.", no_args_is_help=True, rich_markup_mode=None)
# `ocr-assets failures` lists the groups; `ocr-assets failures export --csv F` writes them out.
failures_app = typer.Typer(help="Failures grouped by class and message pattern; `export` writes a CSV.",
                           rich_markup_mode=None)


PANEL = "Operate"  # the help's group for these commands


def register(app: typer.Typer) -> None:
    """Attach this module's commands to the root app."""
    failures_app.callback(invoke_without_command=True)(failures)
    failures_app.command("export")(failures_export)
    app.add_typer(failures_app, name="failures", rich_help_panel=PANEL)
    app.command("retry", rich_help_panel=PANEL)(retry)
    app.command("reset", rich_help_panel=PANEL)(reset)
    app.command("backup", rich_help_panel=PANEL)(backup)
    app.command("show", rich_help_panel=PANEL)(show)
    app.command("inferences", rich_help_panel=PANEL)(inferences)
    app.command("eval", rich_help_panel=PANEL)(eval_prompts)
    prompt_app.command("show", rich_help_panel=PANEL)(prompt_show)
    app.add_typer(prompt_app, name="prompt", rich_help_panel=PANEL)


_NO_WRAP = {"key", "record", "batch", "example keys", "prompt", "at", "sent", "last seen"}


def _table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    """A table whose cells are shown literally (error messages hold brackets rich would eat)."""
    out = Table(title=escape(title), show_lines=False)
    for column in columns:
        out.add_column(column, overflow="fold", no_wrap=column in _NO_WRAP)
    for row in rows:
        out.add_row(*[escape("" if v is None else str(v)) for v in row])
    return out


def _clip(text: str | None, width: int = 120) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


BookOption = Annotated[str | None, typer.Option("--book", help="Only this book (state:school:year).")]
CurrentOption = Annotated[
    bool, typer.Option("--current", help="Only each still-failed record's latest failure (what is broken now).")
]


def failures(
    ctx: typer.Context,
    config: ConfigOption = None,
    book: BookOption = None,
    current: CurrentOption = False,
    examples: Annotated[int, typer.Option(min=0, help="Example keys per group.")] = 3,
) -> None:
    """Failures grouped by error class, error type and message pattern, with counts and example keys."""
    if ctx.invoked_subcommand is not None:
        return
    settings = get_settings(config)
    groups = ops.failure_groups(open_store(settings), book=book, current_only=current, examples=examples)
    if not groups:
        console.print("no failures")
        return
    console.print(_table(
        f"{sum(g.failures for g in groups)} failures in {len(groups)} groups",
        ["class", "type", "pattern", "failures", "records", "example keys", "last seen"],
        [(g.error_class, g.error_type, g.pattern, g.failures, g.records, " ".join(g.example_keys),
          g.last_seen.strftime("%Y-%m-%d %H:%M:%S")) for g in groups],
    ))


def failures_export(
    csv_path: Annotated[Path, typer.Option("--csv", help="Write the CSV here.")],
    config: ConfigOption = None,
    book: BookOption = None,
    current: CurrentOption = False,
) -> None:
    """Export every failure (raw response, traceback, prompt identity, pattern) to CSV."""
    settings = get_settings(config)
    count = ops.export_failures_csv(open_store(settings), csv_path, book=book, current_only=current)
    console.print(f"wrote {count} failures to {escape(str(csv_path))}")


def retry(
    config: ConfigOption = None,
    key: Annotated[list[str] | None, typer.Option("--key", help="This record (repeatable).")] = None,
    book: Annotated[list[str] | None, typer.Option("--book", help="Failed records of this book (repeatable).")] = None,
    all_retryable: Annotated[
        bool, typer.Option("--all-retryable", help="Every retryable failure and every record whose retries ran out.")
    ] = False,
    fatal: Annotated[
        bool, typer.Option("--fatal", help="Also (alone: only) records that failed for a fatal reason; needs --yes.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm resending fatal failures.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be reset, change nothing.")] = False,
) -> None:
    """Make failed records runnable again (attempts reset, audit-logged); the next run sends them."""
    settings = get_settings(config)
    store = open_store(settings)
    with friendly_errors(ops.OperationsError):
        plan = ops.plan_retry(store, keys=key or [], books=book or [], all_retryable=all_retryable,
                              include_fatal=fatal)
    if plan.skipped:
        console.print(_table("left alone", ["record", "why"], sorted(plan.skipped.items())))
    if not plan.selected:
        err_console.print("[red]error:[/red] no record selected for retry")
        raise typer.Exit(1)
    if fatal and not yes and not dry_run:
        err_console.print(
            f"[red]error:[/red] {len(plan.selected)} records selected, some failed for a fatal reason and will "
            "likely fail again (and cost again); add --yes to reset them"
        )
        raise typer.Exit(1)
    if dry_run:
        console.print(f"would reset {len(plan.selected)} records: {escape(' '.join(plan.selected))}")
        return
    selector = {"keys": key or [], "books": book or [], "all_retryable": all_retryable, "fatal": fatal}
    changed = ops.apply_retry(store, plan, reason="cli retry " + json.dumps(selector, sort_keys=True))
    console.print(f"reset {changed} records; they are runnable on the next run")


def reset(
    config: ConfigOption = None,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm wiping every record, batch and log row.")] = False,
) -> None:
    """Wipe the record store after backing its file up next to it (outputs on disk are kept)."""
    settings = get_settings(config)
    store = open_store(settings)
    if not yes:
        err_console.print(f"[red]error:[/red] reset wipes {escape(str(store.path))}; add --yes to confirm")
        raise typer.Exit(1)
    active = store.active_batches() if store.path.exists() else []
    result = ops.reset_store(store)
    if result.backup is None:
        console.print(f"nothing to reset: {escape(str(store.path))} does not exist")
        return
    if active:
        err_console.print(
            f"[yellow]warning:[/yellow] {len(active)} batches were active; their records are in the backup only"
        )
    console.print(f"backup written to {escape(str(result.backup))}")
    console.print(_table("rows wiped", ["table", "rows"], sorted(result.wiped.items())))


def backup(
    config: ConfigOption = None,
    to: Annotated[Path | None, typer.Option("--to", help="Where to write the copy (default: beside the store).")] = None,
) -> None:
    """Copy the record store consistently, even while runs and sensors use it (taken under its lock)."""
    store = open_store(get_settings(config))
    if not store.path.exists():
        err_console.print(f"[red]error:[/red] {escape(str(store.path))} does not exist (nothing planned yet?)")
        raise typer.Exit(1)
    target = store.copy_to(to or ops.backup_path(store.path))
    console.print(f"backup written to {escape(str(target))}")


def show(
    key: Annotated[str, typer.Argument(help="Record key state:school:year:page.")],
    config: ConfigOption = None,
    full: Annotated[bool, typer.Option("--full", help="Print raw responses and tracebacks in full.")] = False,
) -> None:
    """Full history of one record: attempts and batches, errors, prompt identity, raw responses, inferences."""
    settings = get_settings(config)
    with friendly_errors(ops.OperationsError):
        history = ops.record_history(open_store(settings), key)
    r = history.record
    console.print(_table(f"record {r.key}", ["field", "value"], [
        ("status", r.status), ("attempts", f"{r.attempts} of {settings.execution.max_attempts}"),
        ("upstream", r.upstream_key), ("blocked by", r.blocked_by),
        ("last error", f"[{r.error_class}/{r.error_type}] {r.last_error}" if r.last_error else None),
        ("prompt", f"{r.prompt_name}/{r.prompt_version} vars {r.prompt_vars_hash}" if r.prompt_version else None),
        ("engine / model", f"{r.engine} / {r.model}" if r.engine else None),
        ("batch", f"{r.batch_id} #{r.batch_index}" if r.batch_id else None),
        ("tokens in/out/cached", f"{r.prompt_tokens}/{r.output_tokens}/{r.cached_tokens}"),
        ("cost usd", f"{r.cost_usd:.6f}"), ("output", r.output_path), ("image", r.image_path),
    ]))
    console.print(_table("attempts", ["attempt", "batch", "index", "remote", "engine", "batch state", "outcome",
                                      "sent"],
                         [(b["attempt"], b["batch_id"], b["batch_index"], b["remote_name"], b["engine"],
                           b["batch_state"], b["outcome"], b["created_at"]) for b in history.batches]))
    if history.failures:
        console.print(_table("failures", ["attempt", "batch", "class", "type", "message", "prompt", "at"],
                             [(f["attempt"], f["batch_id"], f["error_class"], f["error_type"], f["message"],
                               f"{f['prompt_version']} {f['prompt_vars_hash']}", f["created_at"])
                              for f in history.failures]))
    if history.inferences:
        console.print(_inference_table("inference log", history.inferences))
    for f in history.failures:
        _print_detail(f"attempt {f['attempt']} raw response", f["raw_response"], full)
        _print_detail(f"attempt {f['attempt']} traceback", f["traceback"], full)
    for i in history.inferences:
        if i["success"]:
            _print_detail(f"attempt {i['attempt']} raw response", i["raw_response"], full)
    if history.audit:
        console.print(_table("audit", ["action", "detail", "at"],
                             [(a["action"], _clip(a["detail"], 200), a["created_at"]) for a in history.audit]))


def _print_detail(title: str, text: str | None, full: bool) -> None:
    if not text:
        return
    shown = text if full or len(text) <= 600 else text[:600] + f"… ({len(text)} chars; --full shows all)"
    console.print(f"[bold]{escape(title)}[/bold]")
    console.print(shown, markup=False, highlight=False)


def _inference_table(title: str, rows: Sequence[dict[str, Any]]) -> Table:
    workers = any(i.get("worker") for i in rows)  # a column only where some page ran on a Ray worker
    return _table(title, ["id", "at", "key", "try", "batch", "model", "prompt", "ok", "error",
                          "tokens in/out/cached", "cost usd", "latency s", *(["worker"] if workers else [])],
                  [(i["id"], i["created_at"].strftime("%m-%d %H:%M:%S"), i["key"], i["attempt"], i["batch_id"],
                    i["model"], f"{i['prompt_version']} {(i['prompt_vars_hash'] or '')[:8]}",
                    "yes" if i["success"] else "no",
                    None if i["success"] else f"{i['error_type']}: {_clip(i['error_message'], 60)}",
                    f"{i['prompt_tokens']}/{i['output_tokens']}/{i['cached_tokens']}",
                    f"{i['cost_usd'] or 0:.6f}", None if i["latency_s"] is None else f"{i['latency_s']:.2f}",
                    *([i.get("worker")] if workers else []))
                   for i in rows])


def inferences(
    config: ConfigOption = None,
    key: Annotated[str | None, typer.Option("--key", help="Only this record.")] = None,
    book: BookOption = None,
    limit: Annotated[int, typer.Option(min=1, help="The most recent N rows.")] = 100,
    full: Annotated[
        bool, typer.Option("--full", help="Also print each row's rendered prompt and raw response.")
    ] = False,
) -> None:
    """The DuckDB inference log: one row per record inference (what Braintrust gets as a span)."""
    settings = get_settings(config)
    rows = ops.inference_rows(open_store(settings), key=key, book=book, limit=limit)
    if not rows:
        console.print("no inferences logged")
        return
    console.print(_inference_table(f"{len(rows)} inferences", rows))
    if full:
        for i in rows:
            _print_detail(f"#{i['id']} {i['key']} attempt {i['attempt']} prompt", i["rendered_prompt"], True)
            _print_detail(f"#{i['id']} {i['key']} attempt {i['attempt']} raw response", i["raw_response"], True)


def prompt_show(
    key: Annotated[str, typer.Argument(help="Record key state:school:year:page.")],
    config: ConfigOption = None,
) -> None:
    """Print the exact prompt a record was sent, rebuilt from its stored identity (hash-checked)."""
    settings = get_settings(config)
    registry = PromptRegistry(settings.prompt.registry_dir)
    with friendly_errors(ops.OperationsError, PromptError):
        rebuilt = ops.reconstruct_prompt(settings, open_store(settings), registry, key)
    ident = rebuilt.identity
    if not rebuilt.sent:
        err_console.print(f"{escape(key)} has not been sent yet; this is the prompt it would get now "
                          f"({ident.name}/{ident.version}, vars {ident.vars_hash})")
    elif not rebuilt.ok:
        err_console.print(
            f"[red]error:[/red] cannot reproduce the prompt of {escape(key)}: {escape(rebuilt.problem or '')}"
        )
        raise typer.Exit(1)
    else:
        err_console.print(f"{escape(key)}: {ident.name}/{ident.version} vars {ident.vars_hash} (matches the stored "
                          f"hash) template {ident.template_hash}")
    typer.echo(rebuilt.text, nl=not rebuilt.text.endswith("\n"))


def eval_prompts(
    prompt: Annotated[list[str], typer.Option("--prompt", help="A prompt version to evaluate (repeat to compare).")],
    config: ConfigOption = None,
    engine: Annotated[
        Literal["local", "gemini-realtime"] | None,
        typer.Option("--engine", help="Engine to run (default: the settings' engine)."),
    ] = None,
    sample: Annotated[int | None, typer.Option("--sample", min=0, help="Pages with ground truth to run (0 = all).")] = 20,
    pages: Annotated[bool, typer.Option("--pages", help="Also print a per-page table for each version.")] = False,
    thinking_budget: Annotated[list[int] | None, typer.Option(
        "--thinking-budget", help="A thinking budget to evaluate (repeat to compare; default: the settings').")] = None,
    media_resolution: Annotated[list[str] | None, typer.Option(
        "--media-resolution", help="low | medium | high (repeat to compare; default: the settings').")] = None,
) -> None:
    """Compare prompt versions and generation settings on ground-truth pages: CER, course P/R/F1,
    schema-valid rate, tokens and cost per page."""
    from ocr_assets.core import EngineUnavailable, resolve_engine
    from ocr_assets.engines.factory import make_sync_engine
    from ocr_assets.evaluation import EvalError, run_eval
    from ocr_assets.plan import CorpusRootMissing

    settings = get_settings(config)
    spec = resolve_engine(settings, engine)
    with friendly_errors(EngineUnavailable, ImportError):
        runner = make_sync_engine(settings, spec)
    if spec.local is not None and len(set(prompt)) > 1:
        err_console.print("[yellow]note:[/yellow] the local engine ignores the prompt: versions can differ only "
                          "under a Gemini engine")
    budgets: list[dict] = [{"thinking_budget": b} for b in thinking_budget or []] or [{}]
    resolutions: list[dict] = [{"media_resolution": m} for m in media_resolution or []] or [{}]
    generations = [{**b, **m} for b in budgets for m in resolutions]
    gen = settings.model.generation
    with friendly_errors(CorpusRootMissing, code=2), friendly_errors(EvalError, PromptError, ValueError), \
            console.status("evaluating…"):
        report = run_eval(settings, prompt, runner, sample or None, generations=generations,
                          engine_for=lambda variant: make_sync_engine(variant, spec))
    console.print(_table(
        f"eval {report.run_id}: {len(report.sample)} pages, engine {report.engine}, model {report.model}; "
        f"configured thinking budget {gen.thinking_budget}, level {gen.thinking_level}, media resolution "
        f"{gen.media_resolution or 'default'}",
        ["prompt / setting", "pages", "schema valid", "CER", "mean page CER", "course P", "course R", "course F1",
         "attempts", "tokens/page in/out", "cost/page usd", "failures", "experiment"],
        [(v.version, v.pages, f"{v.schema_valid_rate:.1%}", f"{v.cer:.4f}", f"{v.mean_page_cer:.4f}",
          f"{v.course_precision:.3f}", f"{v.course_recall:.3f}", f"{v.course_f1:.3f}", v.attempts,
          f"{v.prompt_tokens_per_page:.0f}/{v.output_tokens_per_page:.0f}", f"{v.cost_per_page:.6f}",
          " ".join(f"{k}:{n}" for k, n in sorted(v.failures.items())), v.experiment)
         for v in report.versions],
    ))
    if pages:
        for version in report.versions:
            console.print(_table(f"{version.version}: pages", ["key", "valid", "CER", "courses tp/fp/fn", "error",
                                                               "tokens in/out", "cost usd"],
                                 [(p.key, "yes" if p.valid else "no", f"{p.cer:.4f}", f"{p.tp}/{p.fp}/{p.fn}",
                                   p.error_type, f"{p.prompt_tokens}/{p.output_tokens}", f"{p.cost_usd:.6f}")
                                  for p in report.pages if p.version == version.version]))
    console.print(f"stored in the eval_runs / eval_pages tables of {escape(str(settings.paths.database))}; "
                  f"per-version stores under {escape(str(report.work_dir))}")
