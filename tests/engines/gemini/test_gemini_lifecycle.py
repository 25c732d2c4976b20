"""The batch detail kept in a batch row's JSON column: typed, tolerant of old rows, written back whole."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from ocr_assets.engines.gemini.lifecycle import ENGINE, BatchDetail, finish_submit
from ocr_assets.pipeline import Pipeline
from ocr_assets.store import BatchRow, BatchState, ClaimItem, PlannedRecord, RecordStore
from tests.fixtures.corpus import settings_for

# A detail as the untyped runner wrote it: ISO strings, a null input file, and a key no field names.
OLD_HELD_DETAIL = {
    "records": 2, "jsonl_bytes": 900, "raw_tokens": 1200, "calibration": 1.1, "inline_images": True,
    "holds": 2, "next_try": "2026-12-01T10:05:00+00:00", "spool": "/archive/inputs/gb-1.jsonl",
    "enqueued_at_hold": 5000, "input_file": None, "input_uploaded_at": None, "written_by": "an older version",
}


def row(detail: str | None) -> BatchRow:
    now = datetime(2026, 12, 1)
    return BatchRow(batch_id="gb-1", engine=ENGINE, model="m", state=BatchState.HELD, record_count=2,
                    created_at=now, updated_at=now, detail=detail)


def test_a_detail_written_by_the_untyped_runner_parses_into_typed_fields():
    detail = BatchDetail.of(row(json.dumps(OLD_HELD_DETAIL)))
    assert detail.holds == 2 and detail.enqueued_at_hold == 5000 and detail.records == 2
    assert detail.next_try == datetime(2026, 12, 1, 10, 5, tzinfo=UTC)
    assert detail.input_file is None and detail.spool == "/archive/inputs/gb-1.jsonl"
    assert detail.to_store()["written_by"] == "an older version"


def test_a_batch_without_a_readable_detail_gets_an_empty_one(caplog):
    for text in (None, "", "not json", "[1, 2]", '{"holds": "many"}'):
        assert BatchDetail.of(row(text)) == BatchDetail()
    assert "unreadable detail" in caplog.text


def test_the_stored_form_leaves_unset_fields_out_and_round_trips():
    detail = BatchDetail(holds=1, next_try=datetime(2026, 12, 1, 10, tzinfo=UTC), spool="/s.jsonl")
    stored = detail.to_store()
    assert set(stored) == {"holds", "next_try", "spool"}
    assert BatchDetail.of(row(json.dumps(stored))) == detail


def test_finishing_a_held_batch_drops_its_hold_and_keeps_what_was_sent(tmp_path):
    settings = settings_for(tmp_path)
    store = RecordStore(tmp_path / "s.duckdb")
    store.add_planned([PlannedRecord(key=f"CA:ucla:1900:{p}", book="CA:ucla:1900", state="CA", school="ucla",
                                     year=1900, page=p, image_path=f"/img/{p}.jpg",
                                     allow_list_path=f"/allow/{p}.json", upstream_key=None, chain_remaining=0)
                       for p in (1, 2)])
    items = [ClaimItem(key=f"CA:ucla:1900:{p}", batch_index=p - 1, prompt_name="page_ocr", prompt_version="v1.1",
                       prompt_vars_hash="h") for p in (1, 2)]
    store.claim("gb-1", items, engine=ENGINE, model="m", state=BatchState.SUBMITTING, count_attempt=False)
    store.set_batch_state("gb-1", BatchState.HELD, error="429", detail=OLD_HELD_DETAIL)
    uploaded = datetime.now(UTC) - timedelta(minutes=5)

    finish_submit(Pipeline(settings, store=store), store.get_batch("gb-1"), "batches/remote-1",
                  input_file="files/in-1", input_uploaded_at=uploaded)

    batch = store.get_batch("gb-1")
    assert batch.state == BatchState.PENDING and batch.remote_name == "batches/remote-1"
    detail = BatchDetail.of(batch)
    assert detail.next_try is None and detail.spool is None and detail.enqueued_at_hold is None
    assert detail.input_file == "files/in-1" and detail.input_uploaded_at == uploaded
    assert detail.holds == 2 and detail.raw_tokens == 1200  # the history and what was sent stay
    assert json.loads(batch.detail)["written_by"] == "an older version"
