"""`ocr_assets.core` sits below every layer, and the import graph runs one way."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ocr_assets.core import (
    BatchEngine,
    EngineSpec,
    PageFailure,
    PageRequest,
    PageSuccess,
    SyncEngine,
    resolve_engine,
)
from ocr_assets.schema import ErrorClass
from ocr_assets.settings import Settings, SettingsError

PACKAGE = Path(__file__).resolve().parents[1] / "ocr_assets"


def _imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, at module level or inside a function (relative imports resolved)."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(part for part in (base, node.module or "") if part)
            names.add(module)
    return names


def test_core_imports_nothing_of_the_package_but_the_schema_and_the_settings() -> None:
    ours = {name for name in _imported_modules(PACKAGE / "core.py") if name.startswith("ocr_assets")}
    assert ours == {"ocr_assets.schema", "ocr_assets.settings"}


def test_no_module_of_the_package_imports_pytest() -> None:
    importers = [str(path.relative_to(PACKAGE)) for path in sorted(PACKAGE.rglob("*.py"))
                 if any(name == "pytest" or name.startswith(("pytest.", "_pytest")) for name in _imported_modules(path))]
    assert importers == []


@pytest.mark.parametrize("module", ["batches", "inference", "server"])
def test_emulator_state_imports_none_of_the_modules_built_on_it(module: str) -> None:
    imported = _imported_modules(PACKAGE / "engines" / "emulator" / "state.py")
    assert f"ocr_assets.engines.emulator.{module}" not in imported


def test_an_object_with_a_name_a_pricing_mode_and_infer_is_a_sync_engine() -> None:
    class Echo:
        name = "echo"
        pricing_mode = "local"

        def infer(self, requests: list[PageRequest]) -> list[PageSuccess | PageFailure]:
            return [PageFailure(key=r.key, error_class=ErrorClass.FATAL, error_type="empty", message="no text") for r in requests]

    assert isinstance(Echo(), SyncEngine)
    assert not isinstance(object(), SyncEngine)


def test_the_gemini_batch_client_is_a_batch_engine_and_a_sync_engine_is_not() -> None:
    from ocr_assets.engines.gemini.batch import GeminiBatchClient
    from ocr_assets.engines.local.runner import LocalInference

    assert isinstance(GeminiBatchClient(Settings()), BatchEngine)
    assert not isinstance(LocalInference(device="cpu"), BatchEngine)
    assert isinstance(LocalInference(device="cpu"), SyncEngine)


@pytest.mark.parametrize(("file_engine", "run_engine", "kind", "label", "batch"), [
    ("local", None, "local", "local-rapidocr", False),
    ("local", "", "local", "local-rapidocr", False),
    ("local", "gemini-batch", "gemini-batch", "gemini-batch", True),
    ("gemini-batch", "local", "local", "local-rapidocr", False),
    ("gemini-batch", None, "gemini-batch", "gemini-batch", True),
    ("local", "gemini_realtime", "gemini-realtime", "gemini-realtime", False),
    ("local", "gemini-flex", "gemini-flex", "gemini-flex", False),
])
def test_the_run_engine_wins_over_the_settings_engine_and_names_the_batch_label(
    file_engine: str, run_engine: str | None, kind: str, label: str, batch: bool
) -> None:
    spec = resolve_engine(Settings(engine=file_engine), run_engine)
    assert (spec.kind, spec.label, spec.is_batch) == (kind, label, batch)


def test_a_gemini_spec_carries_no_local_engine_even_with_local_overrides() -> None:
    spec = resolve_engine(Settings(engine="local"), "gemini-batch", engine="tesseract", device="cuda:0")
    assert spec == EngineSpec(kind="gemini-batch") and spec.local is None


def test_local_overrides_replace_only_the_fields_given_and_are_validated_like_the_file(tmp_path) -> None:
    settings = Settings(local={"engine": "rapidocr", "device": "cpu", "batch_size": "4"})
    spec = resolve_engine(settings, "local", engine="tesseract", device=None, batch_size=None, model_dir=None)
    # "4" (a YAML string) means the number 4
    assert (spec.local.engine, spec.local.device, spec.local.batch_size) == ("tesseract", "cpu", 4)
    assert spec.label == "local-tesseract" and spec.describe() == "local (tesseract on cpu)"
    vlm = resolve_engine(settings, "local", engine="transformers", model_dir=tmp_path)
    assert vlm.local.model_dir == tmp_path and settings.local.model_dir is None  # the settings are not changed
    with pytest.raises(SettingsError, match="local.engine|engine"):
        resolve_engine(settings, "local", engine="paddle")
    with pytest.raises(SettingsError, match="engine"):
        resolve_engine(settings, "gemini-turbo")
    with pytest.raises(SettingsError, match="the local_inference resource"):
        resolve_engine(settings, None, source="the local_inference resource", engine="paddle")


def test_a_ray_spec_says_where_its_pages_run() -> None:
    spec = resolve_engine(Settings(local={"cluster": "ray", "ray_address": "auto"}))
    assert spec.describe() == "local (rapidocr on ray auto)"


def test_an_engine_spec_is_frozen() -> None:
    spec = resolve_engine(Settings())
    with pytest.raises(ValueError):
        spec.kind = "gemini-batch"  # type: ignore[misc]
