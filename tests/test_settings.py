from pathlib import Path

import pytest

from ocr_assets.settings import SettingsError, load_settings


def test_defaults_load_without_a_file_and_resolve_paths_against_its_folder(tmp_path: Path) -> None:
    settings = load_settings(None, environ={"OCR_ASSETS_CONFIG": str(tmp_path / "ocr_assets.yaml")})
    assert settings.engine == "local"
    assert settings.paths.database == tmp_path / "data/state/ocr_assets.duckdb"
    assert settings.model.generation.response_mime_type == "application/json"


def test_yaml_values_are_read_and_environment_overrides_win(tmp_path: Path) -> None:
    config = tmp_path / "conf.yaml"
    config.write_text("execution:\n  max_attempts: 5\n  batch_size_limit: 20\nfilters:\n  states: [CA]\n")
    settings = load_settings(config, environ={"OCR_ASSETS_EXECUTION__MAX_ATTEMPTS": "7"})
    assert settings.execution.max_attempts == 7
    assert settings.execution.batch_size_limit == 20
    assert settings.filters.states == ["CA"]


@pytest.mark.parametrize(
    ("yaml_text", "field"),
    [
        ("execution:\n  max_attempts: 0\n", "execution.max_attempts"),
        ("execution:\n  max_concurrent_batches: 500\n", "execution.max_concurrent_batches"),
        ("model:\n  generation:\n    temperature: 9\n", "model.generation.temperature"),
        ("engine: teleport\n", "engine"),
        ("filters:\n  year_start: 1950\n  year_end: 1900\n", "filters"),
        ("paths:\n  imagez_root: x\n", "paths.imagez_root"),
    ],
)
def test_invalid_config_gives_one_clear_message_naming_the_field(tmp_path: Path, yaml_text: str, field: str) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(yaml_text)
    with pytest.raises(SettingsError) as info:
        load_settings(config, environ={})
    assert field in str(info.value)
    assert "Traceback" not in str(info.value)


def test_a_secret_in_the_settings_file_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "secret.yaml"
    config.write_text("gemini:\n  gemini_api_key: sk-123\n")
    with pytest.raises(SettingsError, match="environment"):
        load_settings(config, environ={})


def test_unreadable_yaml_and_missing_explicit_file_are_clear_errors(tmp_path: Path) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("execution: [unclosed\n")
    with pytest.raises(SettingsError, match="cannot read settings file"):
        load_settings(bad, environ={})
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "absent.yaml", environ={})


def test_filters_admit_by_state_school_and_year_range() -> None:
    from ocr_assets.settings import FilterSettings

    f = FilterSettings(states=["CA"], schools=[], year_start=1900, year_end=1910)
    assert f.admits("CA", "ucla", 1905)
    assert not f.admits("NY", "ucla", 1905)
    assert not f.admits("CA", "ucla", 1911)


SENTINEL = "sentinel-key-do-not-echo-0123"


@pytest.mark.parametrize(
    ("yaml_text", "env"),
    [
        (f"gemini:\n  api_key: {SENTINEL}\n", {}),  # a secret-looking field in the file
        (f"braintrust_token: {SENTINEL}\n", {}),
        ("", {"OCR_ASSETS_GEMINI__API_KEY": SENTINEL}),  # ... or in an environment override
        ("", {"OCR_ASSETS_TRACKING__PASSWORD": SENTINEL}),
        # a value equal to the key, given to an ordinary field by mistake
        (f"execution:\n  max_attempts: {SENTINEL}\n", {"GEMINI_API_KEY": SENTINEL}),
        ("", {"OCR_ASSETS_MODEL__GENERATION__TEMPERATURE": SENTINEL, "BRAINTRUST_API_KEY": SENTINEL}),
        (f"paths: {SENTINEL}\n", {"GEMINI_API_KEY": SENTINEL}),
    ],
)
def test_a_secret_given_through_a_settings_source_is_never_echoed(tmp_path: Path, yaml_text: str, env: dict) -> None:
    config = tmp_path / "conf.yaml"
    config.write_text(yaml_text)
    with pytest.raises(SettingsError) as info:
        load_settings(config, environ=env)
    assert "invalid configuration" in str(info.value)
    assert SENTINEL not in str(info.value)
    assert info.value.__cause__ is None and info.value.__context__ is None  # no traceback shows the raw input


def test_a_secret_looking_field_says_secrets_come_from_the_environment(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"gemini\.api_key: looks like a secret.*\$GEMINI_API_KEY"):
        load_settings(None, environ={"OCR_ASSETS_CONFIG": str(tmp_path / "none.yaml"), "OCR_ASSETS_GEMINI__API_KEY": "x"})


def test_environment_values_parse_as_yaml_and_an_empty_value_means_none(tmp_path: Path) -> None:
    settings = load_settings(None, environ={
        "OCR_ASSETS_CONFIG": str(tmp_path / "none.yaml"),
        "OCR_ASSETS_FILTERS__STATES": "[CA, NY]", "OCR_ASSETS_GEMINI__BASE_URL": "",
        "OCR_ASSETS_ENGINE": "gemini_batch", "OCR_ASSETS_GEMINI__INLINE_IMAGES": "false",
    })
    assert settings.filters.states == ["CA", "NY"]
    assert settings.gemini.base_url is None
    assert settings.engine == "gemini-batch"
    assert settings.gemini.inline_images is False


def test_an_override_is_validated_like_the_file_and_never_echoes_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    from ocr_assets.settings import Settings

    monkeypatch.setenv("GEMINI_API_KEY", SENTINEL)
    assert Settings().override("local", device="cuda:0").local.device == "cuda:0"
    with pytest.raises(SettingsError, match="engine") as info:
        Settings().override("local", engine=SENTINEL)
    assert SENTINEL not in str(info.value) and info.value.__context__ is None


@pytest.mark.parametrize(("yaml_value", "env_value", "cli_value", "expected"), [
    ("3", None, None, 3),
    (None, "3", None, 3),
    (None, "'3'", None, 3),
    ("auto", "auto", None, "auto"),
    ("8", None, "2", 2),
    (None, None, "auto", "auto"),
])
def test_local_batch_size_is_a_number_of_pages_or_auto_from_the_file_the_environment_and_the_cli(
    tmp_path: Path, yaml_value: str | None, env_value: str | None, cli_value: str | None, expected: int | str
) -> None:
    config = tmp_path / "conf.yaml"
    config.write_text(f"local:\n  batch_size: {yaml_value}\n" if yaml_value else "")
    environ = {"OCR_ASSETS_LOCAL__BATCH_SIZE": env_value} if env_value else {}
    settings = load_settings(config, environ=environ)
    if cli_value is not None:  # `local run --batch-size` hands the option's text to `override`
        settings = settings.override("local", batch_size=cli_value)
    assert settings.local.batch_size == expected


@pytest.mark.parametrize("value", ["-1", "0", "lots", "2.5", "true", "[3]"])
def test_a_batch_size_that_is_neither_auto_nor_a_positive_count_is_one_clear_error(tmp_path: Path, value: str) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(f"local:\n  batch_size: {value}\n")
    for where in ({"path": config, "environ": {}},
                  {"path": None, "environ": {"OCR_ASSETS_CONFIG": str(tmp_path / "none.yaml"),
                                             "OCR_ASSETS_LOCAL__BATCH_SIZE": value}}):
        with pytest.raises(SettingsError) as info:
            load_settings(**where)
        lines = str(info.value).splitlines()
        assert len(lines) == 2 and "local.batch_size" in lines[1]
        assert "'auto' or a positive number of pages" in lines[1]
