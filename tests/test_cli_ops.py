import csv
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from ocr_assets.cli import app
from ocr_assets.cli import common
from ocr_assets.pipeline import Pipeline
from ocr_assets.settings import load_settings
from tests.fixtures.corpus import REPO_ROOT
from tests.fixtures.ops_scenario import A, B, ScriptedEngine, build_scenario, copy_scenario, page_result
from tests.fixtures.records import write_output

runner = CliRunner()


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tables fold long cells at the terminal width; a wide console keeps keys on one line.
    monkeypatch.setattr(common.console, "width", 250)
    monkeypatch.setattr(common.err_console, "width", 250)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("scenario")
    return root, build_scenario(root)


def _config(root: Path, db: Path) -> Path:
    config = db.parent / "ocr_assets.yaml"
    config.write_text(yaml.safe_dump({
        "paths": {"images_root": str(root / "images"), "allow_list_root": str(root / "allow_list"),
                  "output_root": str(root / "output"), "database": str(db),
                  "ground_truth_root": str(root / "ground_truth")},
        "prompt": {"registry_dir": str(REPO_ROOT / "prompts")},
        "execution": {"max_attempts": 2},
    }))
    return config


@pytest.fixture()
def cli(built, tmp_path: Path):
    """(invoke, pipeline on the same store copy, engine) for the scenario."""
    root, (_, engine, _) = built
    pipeline = copy_scenario(root, tmp_path / "copy")
    config = _config(root, pipeline.store.path)

    def invoke(*args: str):
        return runner.invoke(app, [*args, "--config", str(config)])

    return invoke, pipeline, engine


def _statuses(pipeline: Pipeline) -> dict[str, str]:
    return {r.key: str(r.status) for r in pipeline.store.records()}


def test_failures_prints_groups_with_counts_patterns_and_example_keys(cli) -> None:
    invoke, _, _ = cli
    result = invoke("failures")
    assert result.exit_code == 0, result.output
    assert "4 failures in 3 groups" in result.output
    assert "<n> UNAVAILABLE: backend overloaded, retry in <n>s" in result.output
    assert f"{A}:5" in result.output and f"{B}:1" in result.output
    assert "(HARM_CATEGORY_X)" in result.output  # brackets and parentheses shown literally
    current = invoke("failures", "--current", "--book", B)
    assert "1 failures in 1 groups" in current.output and "safety" in current.output


def test_failures_export_writes_a_csv(cli, tmp_path: Path) -> None:
    invoke, _, _ = cli
    out = tmp_path / "f.csv"
    result = invoke("failures", "export", "--csv", str(out))
    assert result.exit_code == 0 and "wrote 4 failures" in result.output
    with out.open(newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 4


def test_retry_all_retryable_resets_exactly_those_records_and_audits_it(cli) -> None:
    invoke, pipeline, _ = cli
    result = invoke("retry", "--all-retryable")
    assert result.exit_code == 0, result.output
    assert "reset 2 records" in result.output
    assert {r.key for r in pipeline.store.runnable()} == {f"{A}:2", f"{A}:5"}
    assert _statuses(pipeline)[f"{B}:1"] == "FATAL_FAILURE"
    detail = json.loads(pipeline.store.query("SELECT detail FROM audit_log WHERE action = 'retry'")[0]["detail"])
    assert sorted(detail["keys"]) == [f"{A}:2", f"{A}:5"] and '"all_retryable": true' in detail["reason"]


def test_retry_of_fatal_failures_needs_yes(cli) -> None:
    invoke, pipeline, _ = cli
    refused = invoke("retry", "--fatal")
    assert refused.exit_code == 1 and "add --yes" in refused.output
    assert _statuses(pipeline)[f"{B}:1"] == "FATAL_FAILURE"
    dry = invoke("retry", "--fatal", "--dry-run")
    assert dry.exit_code == 0 and f"would reset 1 records: {B}:1" in dry.output
    assert _statuses(pipeline)[f"{B}:1"] == "FATAL_FAILURE"
    done = invoke("retry", "--fatal", "--yes")
    assert done.exit_code == 0 and "reset 1 records" in done.output
    assert _statuses(pipeline)[f"{B}:1"] == "PENDING" and _statuses(pipeline)[f"{B}:2"] == "PENDING"


def test_retry_explains_records_it_leaves_alone(cli) -> None:
    invoke, pipeline, _ = cli
    result = invoke("retry", "--key", f"{B}:2", "--key", f"{A}:1")
    assert result.exit_code == 1
    assert f"blocked by {B}:1" in result.output and "is SUCCESS, not failed" in result.output
    assert "no record selected" in result.output
    nothing = invoke("retry")
    assert nothing.exit_code == 1 and "nothing selected" in nothing.output
    by_key = invoke("retry", "--key", f"{A}:2")
    assert by_key.exit_code == 0 and pipeline.store.get(f"{A}:2").attempts == 0


def test_reset_needs_yes_then_backs_up_and_wipes(cli) -> None:
    invoke, pipeline, _ = cli
    refused = invoke("reset")
    assert refused.exit_code == 1 and "add --yes" in refused.output
    assert len(pipeline.store.records()) == 7
    result = invoke("reset", "--yes")
    assert result.exit_code == 0, result.output
    backups = list(pipeline.store.path.parent.glob("store.backup-*.duckdb"))
    assert len(backups) == 1 and str(backups[0]) in result.output.replace("\n", "")
    assert pipeline.store.records() == []
    # the store works as before: planning again fills it
    assert runner.invoke(app, ["plan", "--config", str(pipeline.store.path.parent / "ocr_assets.yaml")]).exit_code == 0
    assert len(pipeline.store.records()) == 7


def test_backup_copies_every_committed_row_while_the_store_is_in_use(cli, tmp_path) -> None:
    import duckdb

    invoke, pipeline, _ = cli
    pipeline.store.audit("just before the backup", {})  # committed just before the copy is taken
    target = tmp_path / "copies" / "store-copy.duckdb"
    result = invoke("backup", "--to", str(target))
    assert result.exit_code == 0, result.output
    assert str(target) in result.output.replace("\n", "")
    con = duckdb.connect(str(target), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM records").fetchone()[0] == len(pipeline.store.records()) == 7
        assert con.execute("SELECT count(*) FROM audit_log WHERE action = 'just before the backup'").fetchone()[0] == 1
    finally:
        con.close()
    default = invoke("backup")
    assert default.exit_code == 0 and len(list(pipeline.store.path.parent.glob("store.backup-*.duckdb"))) == 1


def test_show_prints_a_records_full_history(cli) -> None:
    invoke, pipeline, _ = cli
    result = invoke("show", f"{A}:5")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "FATAL_FAILURE" in out and "2 of 2" in out
    assert "retries exhausted after 2 attempts: 503 UNAVAILABLE" in out
    for batch in pipeline.store.query("SELECT batch_id FROM batch_records WHERE key = ?", [f"{A}:5"]):
        assert batch["batch_id"] in out
    assert f"raw answer for {A}:5" in out and "Traceback: boom" in out
    assert "page_ocr/v1.1 vars" in out and "scripted / scripted-model" in out
    success = invoke("show", f"{A}:1", "--full")
    assert '"page_number": 1' in success.output  # the raw response of the successful attempt
    missing = invoke("show", "x:y:1900:1")
    assert missing.exit_code == 1 and "no record 'x:y:1900:1'" in missing.output


def test_inferences_lists_the_inference_log(cli) -> None:
    invoke, _, _ = cli
    result = invoke("inferences", "--key", f"{A}:5")
    assert result.exit_code == 0 and "2 inferences" in result.output and "http_503" in result.output
    book = invoke("inferences", "--book", B, "--full")
    assert "1 inferences" in book.output and "Catalog: beta (NY)" in book.output
    assert invoke("inferences", "--key", "x:y:1900:1").output.strip() == "no inferences logged"


def test_inferences_shows_a_worker_column_only_when_a_page_ran_on_a_ray_worker(cli) -> None:
    invoke, pipeline, _ = cli
    assert "worker" not in invoke("inferences", "--key", f"{A}:5").output
    pipeline.store.query("UPDATE inference_log SET worker = 'gpu-7/node-a' WHERE key = ? RETURNING id", [f"{A}:5"])
    shown = invoke("inferences", "--key", f"{A}:5", "--limit", "1")
    assert shown.exit_code == 0 and "worker" in shown.output and "gpu-7/node-a" in shown.output


def test_prompt_show_prints_exactly_the_prompt_the_engine_received(cli) -> None:
    invoke, _, engine = cli
    sent = {r.key: r.prompt for r in engine.seen}
    result = invoke("prompt", "show", f"{A}:2")
    assert result.exit_code == 0, result.output
    assert result.stdout == sent[f"{A}:2"]
    assert "matches the stored hash" in result.stderr


def test_prompt_show_refuses_when_the_upstream_output_changed(cli, tmp_path: Path) -> None:
    invoke, pipeline, _ = cli
    path, sha = write_output(tmp_path / "changed", f"{A}:1", page_result(1, courses=2))
    with pipeline.store.connect() as con:  # the upstream output changed after page 2 ran
        con.execute("UPDATE records SET output_path = ?, output_sha256 = ? WHERE key = ?", [str(path), sha, f"{A}:1"])
    result = invoke("prompt", "show", f"{A}:2")
    assert result.exit_code == 1
    assert "cannot reproduce the prompt" in result.stderr and f"upstream {A}:1 output changed" in result.stderr
    assert result.stdout == ""


def test_eval_command_compares_versions_on_ground_truth_pages(tmp_path: Path, monkeypatch) -> None:
    from tests.fixtures.corpus import write_book

    write_book(tmp_path, A, images=[1, 2], allow=[1, 2])
    for page in (1, 2):
        truth = tmp_path / "ground_truth" / "CA" / "alpha" / "1900" / f"{page}.json"
        truth.parent.mkdir(parents=True, exist_ok=True)
        truth.write_text(page_result(page).to_json())
    db = tmp_path / "state" / "store.duckdb"
    db.parent.mkdir(parents=True)
    config = _config(tmp_path, db)
    engine = ScriptedEngine(answers={f"{A}:2": [("retryable", "malformed_json", "bad json")] * 2})
    import ocr_assets.engines.factory as factory

    monkeypatch.setattr(factory, "make_sync_engine", lambda settings, spec=None: engine)
    result = runner.invoke(app, ["eval", "--prompt", "v1", "--prompt", "v1.1", "--sample", "0", "--pages",
                                 "--engine", "gemini-realtime", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "2 pages, engine scripted, model scripted-model" in result.output
    assert "50.0%" in result.output and "malformed_json:1" in result.output
    assert "v1: pages" in result.output and "v1.1: pages" in result.output
    settings = load_settings(config)
    stored = Pipeline(settings).store.query("SELECT version, pages FROM eval_runs ORDER BY version")
    assert stored == [{"version": "v1", "pages": 2}, {"version": "v1.1", "pages": 2}]
    unknown = runner.invoke(app, ["eval", "--prompt", "v9", "--config", str(config)])
    assert unknown.exit_code == 1 and "v9.jinja not found" in unknown.output
    budgets = runner.invoke(app, ["eval", "--prompt", "v1.1", "--sample", "0", "--thinking-budget", "0",
                                  "--thinking-budget", "256", "--engine", "gemini-realtime", "--config", str(config)])
    assert budgets.exit_code == 0, budgets.output
    assert "v1.1 thinking_budget=0" in budgets.output and "v1.1 thinking_budget=256" in budgets.output
    assert "tokens/page in/out" in budgets.output and "cost/page usd" in budgets.output
