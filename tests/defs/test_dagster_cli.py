"""The command lines users run: `dagster asset materialize` on one book, and `ocr-assets demo`."""

import os
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import yaml

from ocr_assets.pipeline import open_store
from ocr_assets.plan import build_plan
from tests.defs.support import REPO_ROOT, Corpus, write_corpus

BIN = Path(sys.executable).parent


def run(args: list[str], env: dict[str, str], cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("GEMINI_API_KEY", "BRAINTRUST_API_KEY")}
    return subprocess.run(args, cwd=cwd, env={**base, **env}, capture_output=True, text=True, timeout=300)


def test_dagster_asset_materialize_drives_one_book_partition(corpus: Corpus, dagster_home: Path) -> None:
    settings = corpus.settings
    store = open_store(settings)
    build_plan(store, settings.paths.images_root, settings.paths.allow_list_root)
    book = "CA:Lincoln High:1901"
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        instance.add_dynamic_partitions("books", [book])

    done = run([str(BIN / "dagster"), "asset", "materialize", "-m", "ocr_assets.definitions",
                "--select", "page_ocr", "--partition", book],
               {"DAGSTER_HOME": str(dagster_home), "OCR_ASSETS_CONFIG": str(corpus.config)})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        assert instance.get_materialized_partitions(dg.AssetKey("page_ocr")) == {book}
        [run_record] = instance.get_runs()
        assert run_record.status == dg.DagsterRunStatus.SUCCESS and run_record.tags["dagster/partition"] == book
    assert {r.status for r in store.records(book=book)} == {"SUCCESS"}
    assert {r.status for r in store.records(book="NY:Adams Academy:1902")} == {"PENDING"}  # other book untouched


def test_ocr_assets_demo_runs_the_pipeline_through_dagster_and_says_where_to_look(tmp_path: Path) -> None:
    corpus = tmp_path / "sample"
    write_corpus(corpus, {"MA:Quincy:1903": {1: ["PHYSICS", "1. Mechanics. Motion and force."],
                                             2: ["CHEMISTRY", "1. General Chemistry. The elements."]}})
    home = tmp_path / "dagster_home"
    done = run([str(BIN / "ocr-assets"), "demo", "--corpus", str(corpus), "--dagster-home", str(home)],
               {"COLUMNS": "200"}, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "2 courses" in out and "Mechanics" in out
    [bar] = [line for line in out.splitlines() if line.startswith("page_ocr ")]  # the progress bar, ended
    assert "2/2" in bar and "0 failed" in bar and "pages/s" in bar
    assert "BetaWarning" not in done.stderr + out and "SupersessionWarning" not in done.stderr + out
    assert f"DAGSTER_HOME={home}" in out and "/assets/page_ocr" in out
    assert "dagster dev -m ocr_assets.definitions" in out  # no workspace.yaml here (from the repo root: -w)

    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_dynamic_partitions("books") == ["MA:Quincy:1903"]
        for asset in ("page_ocr", "book_courses"):
            assert instance.get_materialized_partitions(dg.AssetKey(asset)) == {"MA:Quincy:1903"}
        assert instance.get_latest_materialization_event(dg.AssetKey("courses")) is not None
        assert len(instance.get_runs()) == 3  # plan, the books, the corpus table
    con = duckdb.connect(str(tmp_path / "data" / "output" / "courses.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM courses").fetchall()[0][0] == 2
    finally:
        con.close()


def readme_dagster_commands() -> list[str]:
    """The README's `DAGSTER_HOME=$PWD/dagster_home dagster …` shell lines, continuation lines joined."""
    text = (REPO_ROOT / "README.md").read_text().replace("\\\n", " ")
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    return [" ".join(line.split()) for block in blocks for line in block.splitlines()
            if line.startswith("DAGSTER_HOME=$PWD/dagster_home dagster ")]


def test_the_readme_dagster_commands_work_as_written_from_a_fresh_dagster_home(tmp_path: Path) -> None:
    commands = readme_dagster_commands()
    assert [c.split()[2:4] for c in commands] == [["asset", "materialize"]] * 2 + [["sensor", "start"],
                                                 ["sensor", "stop"], ["sensor", "start"]]
    home = tmp_path / "dagster_home"  # as a fresh clone has it: the shipped dagster.yaml, no storage yet
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO_ROOT / "dagster_home" / "dagster.yaml").read_text())
    sample = REPO_ROOT / "data" / "sample"
    config = tmp_path / "ocr_assets.yaml"  # the sample corpus, with outputs and the store kept out of the repo
    config.write_text(yaml.safe_dump({
        "engine": "local", "prompt": {"registry_dir": str(REPO_ROOT / "prompts")},
        "paths": {"images_root": str(sample / "images"), "allow_list_root": str(sample / "allow_list"),
                  "output_root": str(tmp_path / "output"), "database": str(tmp_path / "state" / "store.duckdb"),
                  "ground_truth_root": None}}))
    env = {"OCR_ASSETS_CONFIG": str(config), "PATH": f"{BIN}:{os.environ['PATH']}"}
    location = yaml.safe_load((REPO_ROOT / "workspace.yaml").read_text())["load_from"][0]["python_module"]

    def sh(command: str) -> None:
        done = run(["bash", "-c", command.replace("$PWD/dagster_home", str(home))], env)
        assert done.returncode == 0, command + "\n" + done.stdout[-3000:] + done.stderr[-3000:]

    def sensors() -> dict[str, tuple[str, str]]:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            return {s.instigator_name: (s.origin.repository_origin.code_location_origin.location_name, s.status.value)
                    for s in instance.all_instigator_state()}

    plan, book, start, stop, start_all = commands
    sh(plan)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert "NY:vassar:1905" in instance.get_dynamic_partitions("books")  # the README's partition exists
    sh(book)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_materialized_partitions(dg.AssetKey("page_ocr")) == {"NY:vassar:1905"}
        assert instance.get_materialized_partitions(dg.AssetKey("book_courses")) == {"NY:vassar:1905"}

    sh(start)  # the state lands on the UI's code location, so `stop` really stops what the UI shows
    assert sensors() == {"book_discovery_sensor": (location["location_name"], "RUNNING")}
    sh(stop)
    assert sensors()["book_discovery_sensor"] == (location["location_name"], "STOPPED")
    sh(start_all)
    assert {name: status for name, (_, status) in sensors().items()} == {
        name: "RUNNING" for name in ("book_discovery_sensor", "batch_submit_sensor",
                                                        "batch_poll_sensor")}
