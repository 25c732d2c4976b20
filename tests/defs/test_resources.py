"""`defs/resources.py`: the local_inference resource follows the run's resolved engine, never the file's."""

from pathlib import Path

import pytest

from ocr_assets.core import resolve_engine
from ocr_assets.defs.resources import LocalInferenceResource, SettingsResource
from ocr_assets.core import EngineUnavailable
from tests.defs.support import write_settings


def test_the_local_resource_gives_no_engine_for_a_gemini_spec_even_when_the_file_says_local(tmp_path: Path) -> None:
    resource = LocalInferenceResource(settings=SettingsResource(config_path=str(write_settings(tmp_path))),
                                      engine="transformers", model_dir=str(tmp_path / "no-such-model"))
    settings = resource.settings.load()
    assert settings.engine == "local"
    spec = resolve_engine(settings, "gemini-batch", **resource.overrides())
    assert resource.get(spec) is None
    with pytest.raises(EngineUnavailable, match="no-such-model"):  # what loading it would have done
        resource.get(resolve_engine(settings, None, **resource.overrides()))


def test_only_the_fields_set_on_the_resource_override_the_local_settings(tmp_path: Path) -> None:
    resource = LocalInferenceResource(settings=SettingsResource(config_path=str(write_settings(tmp_path))),
                                      engine="tesseract", batch_size="")
    assert resource.overrides() == {"engine": "tesseract"}
    spec = resolve_engine(resource.settings.load(), None, **resource.overrides())
    assert (spec.label, spec.local.batch_size, spec.local.device) == ("local-tesseract", "auto", "cpu")
