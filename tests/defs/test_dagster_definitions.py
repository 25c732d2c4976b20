"""The code location loads, and its objects are the ones the README and the UI promise."""

import subprocess
import sys
from pathlib import Path

import dagster as dg
import yaml

from ocr_assets.definitions import defs
from ocr_assets.defs.partitions import books

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_definitions_are_loadable() -> None:
    dg.Definitions.validate_loadable(defs)


def test_loading_and_resolving_the_code_location_prints_no_beta_or_supersession_warning() -> None:
    # A fresh interpreter: the warnings fire at import and at the first repository build, once per process.
    script = ("import dagster as dg; from ocr_assets.definitions import defs; "
              "dg.Definitions.validate_loadable(defs); defs.get_repository_def(); print('loaded')")
    done = subprocess.run([sys.executable, "-W", "always", "-c", script], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0 and "loaded" in done.stdout, done.stderr[-3000:]
    assert "BetaWarning" not in done.stderr and "SupersessionWarning" not in done.stderr, done.stderr[-3000:]


def test_user_code_keeps_its_own_beta_warnings() -> None:
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")

        @dg.asset(partitions_def=books, backfill_policy=dg.BackfillPolicy.single_run())
        def users_asset() -> None: ...

    assert any(issubclass(w.category, dg.BetaWarning) for w in caught)  # silenced for ours only


def test_assets_checks_jobs_sensors_and_resources_have_the_documented_names() -> None:
    graph = defs.resolve_asset_graph()
    assert {key.to_user_string() for key in graph.get_all_asset_keys()} == {
        "corpus_plan", "page_ocr", "book_courses", "courses"}
    assert {check.name for check in graph.asset_check_keys} == {
        "outputs_match_schema", "no_page_silently_missing", "courses_on_content_pages", "cost_within_budget"}
    for name in ("plan_corpus_job", "ocr_local_job", "ocr_gemini_batch_job", "ocr_gemini_realtime_job", "submit_batches_job",
                 "ingest_batch_job"):
        assert defs.resolve_job_def(name).name == name
    assert set(defs.resources) == {"settings", "store", "gemini", "local_inference", "tracker"}


def test_book_assets_are_dynamically_partitioned_with_a_single_run_backfill_policy() -> None:
    for key in ("page_ocr", "book_courses"):
        asset = defs.resolve_assets_def(key)
        assert asset.partitions_def == books and books.name == "books"
        assert asset.backfill_policy == dg.BackfillPolicy.single_run()
    assert defs.resolve_assets_def("courses").partitions_def is None


def test_every_sensor_is_stopped_until_turned_on() -> None:
    sensors = {s.name: s for s in defs.sensors}
    assert set(sensors) == {"book_discovery_sensor", "batch_submit_sensor", "batch_poll_sensor"}
    assert all(s.default_status == dg.DefaultSensorStatus.STOPPED for s in sensors.values())


def test_the_local_job_runs_in_process_so_the_model_loads_once() -> None:
    assert defs.resolve_job_def("ocr_local_job").executor_def == dg.in_process_executor
    assert defs.resolve_job_def("ocr_local_job").tags["ocr_assets/engine"] == "local"


def test_every_asset_sensor_and_resource_has_a_description() -> None:
    graph = defs.resolve_asset_graph()
    assert all(graph.get(key).description for key in graph.get_all_asset_keys())
    assert all(s.description for s in defs.sensors)
    assert all(type(r).__doc__ for r in defs.resources.values())


def test_the_shipped_instance_queues_runs_with_a_small_limit_and_keeps_telemetry_off(tmp_path) -> None:
    config = yaml.safe_load((REPO_ROOT / "dagster_home" / "dagster.yaml").read_text())
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert 1 <= config["concurrency"]["runs"]["max_concurrent_runs"] <= 3
    assert config["telemetry"]["enabled"] is False
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO_ROOT / "dagster_home" / "dagster.yaml").read_text())
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert Path(instance.root_directory) == home
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1


def test_the_demos_own_instance_limits_the_inference_pool_like_the_shipped_one(tmp_path) -> None:
    from ocr_assets.cli.dagster_cmds import MINIMAL_INSTANCE

    shipped = yaml.safe_load((REPO_ROOT / "dagster_home" / "dagster.yaml").read_text())
    assert yaml.safe_load(MINIMAL_INSTANCE)["concurrency"] == shipped["concurrency"]


def test_every_page_ocr_step_takes_a_slot_of_the_inference_pool() -> None:
    from ocr_assets.defs.assets import INFERENCE_POOL

    assert defs.resolve_assets_def("page_ocr").op.pool == INFERENCE_POOL
    assert all(defs.resolve_assets_def(name).op.pool is None for name in ("corpus_plan", "book_courses", "courses"))


def test_workspace_yaml_loads_the_definitions_module() -> None:
    workspace = yaml.safe_load((REPO_ROOT / "workspace.yaml").read_text())
    assert workspace["load_from"][0]["python_module"]["module_name"] == "ocr_assets.definitions"
