"""`local.cluster: ray` on a real two-node Ray cluster (head + a second `ray start --address` node, 1 CPU each).

The driving test process stays the only store writer; pages go out as bytes and outcomes come back
naming the node that ran them. Killing the worker node mid-run loses nothing and runs nothing twice.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from ocr_assets import pipeline as pipeline_module
from ocr_assets.core import PageFailure, PageOutcome
from ocr_assets.engines.factory import make_sync_engine
from ocr_assets.engines.local.ray_cluster import NO_WORKERS, WORKER_DIED, RayInference
from ocr_assets.engines.local.runner import LocalInference
from ocr_assets.pipeline import Pipeline
from ocr_assets.plan import build_plan
from tests.fixtures.corpus import settings_for, write_book
from tests.fixtures.ray_nodes import RayTestCluster, ray_available
from tests.fixtures.services import require_or_skip

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

BOOK = "CA:ray:1920"
PAGES = list(range(1, 41, 2))  # gaps everywhere: every page is its own chain, all runnable in one wave


@pytest.fixture(scope="module")
def cluster():
    require_or_skip(ray_available(), "ray is not installed (pip install -e '.[cluster]')")
    nodes = RayTestCluster(cpus_per_node=1)
    try:
        nodes.start_head()
        nodes.wait_for_nodes(1)
        yield nodes
    finally:
        nodes.shutdown()


@pytest.fixture
def worker_node(cluster: RayTestCluster):
    node = cluster.add_node()
    alive = cluster.wait_for_nodes(2)
    yield node, alive
    node.kill()
    cluster.wait_for_nodes(1)  # the next test starts from the head alone


@pytest.fixture
def book_pipeline(tmp_path: Path, cluster: RayTestCluster) -> Pipeline:
    write_book(tmp_path, BOOK, images=PAGES, allow=PAGES)
    settings = settings_for(tmp_path, local__cluster="ray", local__ray_address=cluster.address,
                            local__batch_size=2)
    pipeline = Pipeline(settings)
    build_plan(pipeline.store, settings.paths.images_root, settings.paths.allow_list_root)
    return pipeline


@pytest.fixture
def written(monkeypatch: pytest.MonkeyPatch) -> Counter:
    """How many times each record's output file was written (a spy around the real writer)."""
    counts: Counter = Counter()
    real = pipeline_module.write_outputs

    def counting(files):
        files = list(files)
        counts.update(file.key for file in files)
        return real(files)

    monkeypatch.setattr(pipeline_module, "write_outputs", counting)
    return counts


def success_attempts(pipeline: Pipeline) -> Counter:
    rows = pipeline.store.query("SELECT key FROM inference_log WHERE success")
    return Counter(row["key"] for row in rows)


def test_the_settings_pick_the_ray_engine_with_the_local_options(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, local__cluster="ray", local__ray_address="auto", local__batch_size=3)
    engine = make_sync_engine(settings)
    assert isinstance(engine, RayInference)
    assert engine.address == "auto" and engine.pages_per_task == 3 and engine.name == "local-rapidocr"
    assert isinstance(make_sync_engine(settings_for(tmp_path)), LocalInference)


def test_a_book_runs_on_both_nodes_and_this_process_writes_every_output_once(
    cluster: RayTestCluster, worker_node, book_pipeline: Pipeline, written: Counter
) -> None:
    _node, alive = worker_node
    engine = make_sync_engine(book_pipeline.settings)
    seen: list[PageOutcome] = []
    engine.set_progress(seen.append)
    try:
        placed = engine.load()
        summary = book_pipeline.run_sync(engine)
    finally:
        engine.close()

    assert len(placed) == 2
    keys = {f"{BOOK}:{page}" for page in PAGES}
    assert summary.succeeded == len(keys) and summary.attempted == len(keys)
    assert {o.key for o in seen} == keys and not [o for o in seen if isinstance(o, PageFailure)]
    ran_on = Counter(o.worker.rpartition("/")[2] for o in seen)
    assert set(ran_on) == {node["NodeID"] for node in alive}, ran_on  # both nodes did work
    assert book_pipeline.store.status_counts() == {"SUCCESS": len(keys)}
    assert written == Counter(keys)  # one write per page, all from this process
    assert success_attempts(book_pipeline) == Counter(keys)
    logged = {r["key"]: r["worker"] for r in book_pipeline.store.query("SELECT key, worker FROM inference_log")}
    assert logged == {o.key: o.worker for o in seen}  # the log says which node ran each page


def test_killing_the_worker_node_mid_run_loses_nothing_and_runs_nothing_twice(
    cluster: RayTestCluster, worker_node, book_pipeline: Pipeline, written: Counter
) -> None:
    node, alive = worker_node
    head_id = next(n["NodeID"] for n in alive if "node:__internal_head__" in n["Resources"])
    engine = make_sync_engine(book_pipeline.settings)
    seen: list[PageOutcome] = []

    def on_outcome(outcome: PageOutcome) -> None:
        seen.append(outcome)
        # The first page the worker node answers: it still holds more pages in flight; lose it now.
        if outcome.worker and not outcome.worker.endswith(head_id) and node.process.poll() is None:
            node.kill()

    engine.set_progress(on_outcome)
    try:
        engine.load()
        summary = book_pipeline.run_sync(engine)
    finally:
        engine.close()

    keys = {f"{BOOK}:{page}" for page in PAGES}
    assert node.process.poll() is not None, "the worker node was never killed: it answered no page"
    died = {o.key for o in seen if isinstance(o, PageFailure)}
    assert died, "no page was in flight on the killed node"
    assert {o.error_type for o in seen if isinstance(o, PageFailure)} <= {WORKER_DIED, NO_WORKERS}
    # Nothing lost: every page ends SUCCESS; the lost ones were retried as new attempts on the head.
    assert book_pipeline.store.status_counts() == {"SUCCESS": len(keys)}
    assert summary.succeeded == len(keys)
    for key in died:
        assert book_pipeline.store.get(key).attempts == 2
    # Nothing twice: one successful attempt and one output write per page.
    assert success_attempts(book_pipeline) == Counter(keys)
    assert written == Counter(keys)
    late = [o for o in seen if o.key in died and not isinstance(o, PageFailure)]
    assert late and all(o.worker.endswith(head_id) for o in late)



def test_a_gpu_engine_on_a_cluster_without_gpus_stops_before_any_record_is_claimed(
    cluster: RayTestCluster, tmp_path: Path
) -> None:
    from ocr_assets.core import EngineUnavailable
    from ocr_assets.engines.factory import drive

    write_book(tmp_path, BOOK, images=PAGES[:2], allow=PAGES[:2])
    (tmp_path / "vlm").mkdir()
    settings = settings_for(tmp_path, local__cluster="ray", local__ray_address=cluster.address,
                            local__engine="transformers", local__device="cuda:0", local__model_dir=tmp_path / "vlm")
    pipeline = Pipeline(settings)
    build_plan(pipeline.store, settings.paths.images_root, settings.paths.allow_list_root)
    with pytest.raises(EngineUnavailable, match="a free GPU per actor"):
        drive(pipeline)
    assert pipeline.store.status_counts() == {"PENDING": 2}
