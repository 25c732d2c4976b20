"""Result files are joined to records strictly by key; sharding keeps inputs under the caps."""

from __future__ import annotations

import json
import random

from ocr_assets.core import PageFailure, PageSuccess
from ocr_assets.engines.gemini.batch import BatchLine, parse_results, shard
from ocr_assets.schema import ErrorClass


def answer(key: str) -> dict:
    page = int(key.rsplit(":", 1)[1])
    text = json.dumps({"raw_ocr": {"text_blocks": [{"block_id": 1, "text": f"page {key}"}]},
                       "page_info": {"page_number": page}, "courses": []})
    return {"key": key, "response": {"candidates": [{"content": {"parts": [{"text": text}]}, "finishReason": "STOP"}],
                                     "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5}}}


def lines(objs) -> bytes:
    return b"".join(json.dumps(o).encode() + b"\n" for o in objs)


MEMBERS = {f"ny:a:1900:{p}": i for i, p in enumerate(range(1, 11))}


def test_shuffled_results_land_on_their_own_records_whatever_the_order():
    objs = [answer(k) for k in MEMBERS]
    random.Random(7).shuffle(objs)
    outcomes, report = parse_results(lines(objs), MEMBERS, batch_id="b")
    assert [o.key for o in outcomes] == list(MEMBERS)  # returned in within-batch index order
    for o in outcomes:
        assert isinstance(o, PageSuccess)
        assert o.result.raw_ocr.text_blocks[0].text == f"page {o.key}"  # each answer on its own record
    assert report.parsed == 10 and report.missing_count == 0 and report.result_fraction == 1.0
    # the index cross-check: a positional join would have mis-assigned these lines
    assert report.out_of_position == sum(1 for pos, o in enumerate(objs) if MEMBERS[o["key"]] != pos)
    assert report.out_of_position > 0


def test_in_order_results_have_no_lines_out_of_position():
    _, report = parse_results(lines([answer(k) for k in MEMBERS]), MEMBERS, batch_id="b")
    assert report.out_of_position == 0


def test_unknown_duplicate_missing_and_malformed_lines_are_counted_not_applied():
    keys = list(MEMBERS)
    error_first = {"key": keys[1], "error": {"code": 500, "message": "x", "status": "INTERNAL"}}
    objs = [answer(keys[0]), error_first, answer(keys[1]), answer(keys[0]) | {"response": {"candidates": []}},
            answer("ca:other:1901:1"), {"no_key": True}]
    data = lines(objs[:3]) + b"{broken json\n" + lines(objs[3:]) + b"\n"
    outcomes, report = parse_results(data, MEMBERS, batch_id="b")
    by_key = {o.key: o for o in outcomes}
    assert set(by_key) == {keys[0], keys[1]}
    assert isinstance(by_key[keys[0]], PageSuccess)  # first valid answer kept over the later empty one
    assert isinstance(by_key[keys[1]], PageSuccess)  # the error line lost to the later valid one
    assert report.duplicate_count == 2 and set(report.duplicate_keys) == {keys[0], keys[1]}
    assert report.unknown_count == 1 and report.unknown_keys == ["ca:other:1901:1"]
    assert report.malformed_lines == 2
    assert report.missing_count == 8 and report.missing_keys[0] == keys[2]
    assert report.result_fraction == 0.2


def test_error_and_status_lines_become_classified_failures():
    keys = list(MEMBERS)
    objs = [{"key": keys[0], "status": {"code": 429, "message": "q", "status": "RESOURCE_EXHAUSTED"}},
            {"key": keys[1], "error": {"code": 400, "message": "Unable to process input image",
                                       "status": "INVALID_ARGUMENT"}},
            {"key": keys[2], "something": 1}]
    outcomes, report = parse_results(lines(objs), MEMBERS, batch_id="b")
    got = {o.key: (o.error_class, o.error_type) for o in outcomes if isinstance(o, PageFailure)}
    assert got == {keys[0]: (ErrorClass.RETRYABLE, "rate_limited"), keys[1]: (ErrorClass.FATAL, "image_unreadable"),
                   keys[2]: (ErrorClass.RETRYABLE, "malformed_result_line")}
    assert report.failed == 3 and report.succeeded == 0


def test_an_empty_result_file_reports_every_key_missing():
    outcomes, report = parse_results(b"", MEMBERS, batch_id="b")
    assert outcomes == [] and report.missing_count == 10 and report.result_fraction == 0.0


def line(key: str, size: int, tokens: int = 10) -> BatchLine:
    return BatchLine(key=key, data=b"x" * (size - 1) + b"\n", raw_tokens=tokens, estimated_tokens=tokens)


def test_shards_stay_under_the_byte_and_record_caps_and_keep_order():
    items = [line(f"k{i}", 300) for i in range(10)]
    shards = shard(items, max_bytes=1000, max_records=100)
    assert [len(s) for s in shards] == [3, 3, 3, 1]
    assert all(sum(len(x.data) for x in s) <= 1000 for s in shards)
    assert [x.key for s in shards for x in s] == [x.key for x in items]
    assert [len(s) for s in shard(items, max_bytes=10**9, max_records=4)] == [4, 4, 2]


def test_an_oversized_line_gets_its_own_shard_rather_than_being_dropped():
    items = [line("a", 100), line("big", 5000), line("b", 100)]
    assert [[x.key for x in s] for s in shard(items, max_bytes=1000, max_records=10)] == [["a"], ["big"], ["b"]]


def test_the_token_room_and_shard_count_are_strict():
    items = [line(f"k{i}", 10, tokens=100) for i in range(10)]
    assert sum(len(s) for s in shard(items, max_bytes=10**6, max_records=100, max_tokens=450)) == 4
    assert shard(items, max_bytes=10**6, max_records=100, max_tokens=50) == []
    assert len(shard(items, max_bytes=10**6, max_records=2, max_shards=3)) == 3
