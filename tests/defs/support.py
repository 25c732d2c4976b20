"""Helpers for the Dagster-layer tests: a tiny rendered corpus, its settings, sensor ticks and launches."""

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import yaml
from PIL import Image, ImageDraw, ImageFont

from ocr_assets.settings import Settings, load_settings

REPO_ROOT = Path(__file__).resolve().parents[2]
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"

# Two short books of clear text (a title page, then course listings), the second with a chain gap.
PAGES: dict[str, dict[int, list[str]]] = {
    "CA:Lincoln High:1901": {
        1: ["LINCOLN HIGH SCHOOL", "CATALOGUE 1901"],
        2: ["MATHEMATICS", "1. Algebra. Equations and graphs.", "2. Geometry. Plane figures and proofs."],
    },
    "NY:Adams Academy:1902": {
        1: ["ENGLISH", "1. Composition. Writing clear prose.", "2. Literature. Reading the classics."],
        2: ["HISTORY", "1. American History. The colonies to 1865."],
        4: ["LATIN", "1. Latin Grammar. Forms and syntax."],
    },
}


def render_page(lines: list[str], path: Path) -> None:
    font = ImageFont.truetype(FONT, 30) if os.path.exists(FONT) else ImageFont.load_default(size=30)
    image = Image.new("RGB", (900, 90 + 60 * len(lines)), "white")
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((40, 40 + 60 * i), line, fill="black", font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")


def write_corpus(root: Path, pages: dict[str, dict[int, list[str]]]) -> None:
    for book, book_pages in pages.items():
        state, school, year = book.split(":")
        for page, lines in book_pages.items():
            render_page(lines, root / "images" / state / school / year / f"{page}.png")
            allow = root / "allow_list" / state / school / year / f"{page}.json"
            allow.parent.mkdir(parents=True, exist_ok=True)
            allow.write_text('{"label": "curricular"}')


def write_settings(root: Path, **extra: object) -> Path:
    data: dict = {
        "engine": "local",
        "paths": {
            "images_root": str(root / "images"), "allow_list_root": str(root / "allow_list"),
            "output_root": str(root / "output"), "database": str(root / "state" / "store.duckdb"),
            "ground_truth_root": None,
        },
        "prompt": {"registry_dir": str(REPO_ROOT / "prompts")},
        "local": {"engine": "rapidocr", "device": "cpu"},
    }
    for section, values in extra.items():
        data.setdefault(section, {}).update(values) if isinstance(values, dict) else data.update({section: values})
    path = root / "ocr_assets.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def fresh_home(template: Path, home: Path) -> Path:
    """A copy of an initialised instance folder (creating the SQLite storage takes seconds; copying doesn't)."""
    shutil.copytree(template, home)
    return home


@dataclass
class Corpus:
    root: Path
    config: Path
    books: list[str]

    @property
    def settings(self) -> Settings:
        return load_settings(self.config)


def tick(sensor, instance: dg.DagsterInstance, cursor: str | None = None):
    """One sensor evaluation with the resources it needs (the daemon initialises only those)."""
    from ocr_assets.defs.resources import default_resources

    resources = {k: v for k, v in default_resources().items() if k in sensor.required_resource_keys}
    with dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor) as context:
        return sensor(context)


def launch(instance: dg.DagsterInstance, sensor, request: dg.RunRequest) -> dg.ExecuteInProcessResult | None:
    """Launch a requested run as the daemon does: a run key this sensor already launched is skipped."""
    from ocr_assets.definitions import defs

    tags = {**request.tags, "dagster/sensor_name": sensor.name}
    if request.run_key:
        tags["dagster/run_key"] = request.run_key
        if instance.get_runs(dg.RunsFilter(tags={"dagster/sensor_name": sensor.name,
                                                 "dagster/run_key": request.run_key})):
            return None
    job = defs.resolve_job_def(request.job_name or sensor.job_name)
    result = job.execute_in_process(instance=instance, run_config=request.run_config, tags=tags)
    assert result.success
    return result
