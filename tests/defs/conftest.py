"""Fixtures for the Dagster layer: a tiny rendered corpus, its settings file, a real temp instance."""

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from tests.defs.support import PAGES, Corpus, fresh_home, write_corpus, write_settings


@pytest.fixture
def corpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Corpus:
    """A rendered two-book corpus with its settings file, selected through $OCR_ASSETS_CONFIG."""
    root = tmp_path / "corpus"
    write_corpus(root, PAGES)
    config = write_settings(root)
    monkeypatch.setenv("OCR_ASSETS_CONFIG", str(config))
    return Corpus(root=root, config=config, books=sorted(PAGES))


@pytest.fixture(scope="session")
def instance_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An initialised instance folder, made once: creating the SQLite storage takes seconds, copying it doesn't."""
    template = tmp_path_factory.mktemp("dagster_home_template")
    with dg.instance_for_test(temp_dir=str(template)) as inst:
        inst.get_runs(limit=1)
    return template


@pytest.fixture
def dagster_home(instance_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temp DAGSTER_HOME holding a fresh, initialised instance (set in the environment)."""
    home = fresh_home(instance_template, tmp_path / "dagster_home")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


@pytest.fixture
def instance(dagster_home: Path) -> Iterator[dg.DagsterInstance]:
    """A real Dagster instance (SQLite storage) in a temp DAGSTER_HOME."""
    with dg.DagsterInstance.from_config(str(dagster_home)) as inst:
        yield inst


