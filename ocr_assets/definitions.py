"""The Dagster code location: assets, checks, jobs, sensors and resources from `ocr_assets/defs/`."""

import warnings

import dagster as dg

from ocr_assets.defs.assets import book_courses, corpus_plan, courses, page_ocr
from ocr_assets.defs.checks import (
    cost_within_budget,
    courses_on_content_pages,
    no_page_silently_missing,
    outputs_match_schema,
)
from ocr_assets.defs.jobs import (
    ingest_batch_job,
    ocr_gemini_batch_job,
    ocr_gemini_realtime_job,
    ocr_local_job,
    plan_corpus_job,
    submit_batches_job,
)
from ocr_assets.defs.resources import default_resources
from ocr_assets.defs.sensors import batch_poll_sensor, batch_submit_sensor, book_discovery_sensor

def _resolved(definitions: dg.Definitions) -> dg.Definitions:
    """`definitions` with its repository built now (cached), so binding resources happens once, here.

    Binding resources re-creates each sensor with Dagster's own `owners=[]`, which Dagster 1.13 reports as a
    BetaWarning about a parameter we never pass: silenced for this build only, not for user code.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        definitions.get_repository_def()
    return definitions


defs = _resolved(dg.Definitions(
    assets=[corpus_plan, page_ocr, book_courses, courses],
    asset_checks=[outputs_match_schema, no_page_silently_missing, courses_on_content_pages, cost_within_budget],
    jobs=[plan_corpus_job, ocr_local_job, ocr_gemini_batch_job, ocr_gemini_realtime_job, submit_batches_job,
          ingest_batch_job],
    sensors=[book_discovery_sensor, batch_submit_sensor, batch_poll_sensor],
    resources=default_resources(),
    # Steps of one run share a process: the chain is sequential anyway, and a step process per asset
    # and per check would each reload the code location (seconds apiece on a 2-core machine).
    executor=dg.in_process_executor,
))
