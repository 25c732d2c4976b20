import json
import os
from pathlib import Path

import pytest

from ocr_assets.plan import build_plan, export_plan, scan_corpus
from ocr_assets.settings import FilterSettings
from ocr_assets.store import RecordStore
from tests.fixtures.corpus import write_book

BOOK = "California:LincolnHigh:2023"


def _store(tmp_path: Path) -> RecordStore:
    return RecordStore(tmp_path / "state" / "store.duckdb")


def _plan(tmp_path: Path, store: RecordStore | None = None, filters: FilterSettings | None = None):
    store = store or _store(tmp_path)
    return store, build_plan(store, tmp_path / "images", tmp_path / "allow_list", filters)


def _reasons(result) -> dict[str, str]:
    return {Path(e.path).name: e.reason for e in result.report}


def test_design_example_allow_list_3_4_5_12_gives_chain_3_4_5_and_12_alone(tmp_path: Path) -> None:
    write_book(tmp_path, BOOK, images=range(1, 21), allow=[3, 4, 5, 12])
    store, result = _plan(tmp_path)
    assert result.pages_found == 4 and result.report == []
    plan_file = tmp_path / "plan.json"
    assert export_plan(store, plan_file) == 4
    plan = json.loads(plan_file.read_text())
    assert set(plan) == {"nodes", "deps"}
    assert plan["deps"] == {
        f"{BOOK}:3": None, f"{BOOK}:4": f"{BOOK}:3", f"{BOOK}:5": f"{BOOK}:4", f"{BOOK}:12": None,
    }
    node = plan["nodes"][f"{BOOK}:4"]
    assert node["image_path"].endswith("images/California/LincolnHigh/2023/4.jpg")
    assert node["filter_json"].endswith("allow_list/California/LincolnHigh/2023/4.json")


def test_longest_remaining_chain_is_recorded_for_scheduling(tmp_path: Path) -> None:
    write_book(tmp_path, BOOK, images=range(1, 21), allow=[3, 4, 5, 12])
    store, _ = _plan(tmp_path)
    chain = {r.page: r.chain_remaining for r in store.records()}
    assert chain == {3: 2, 4: 1, 5: 0, 12: 0}
    assert [r.page for r in store.runnable(10)] == [3, 12]


def test_images_without_an_allow_list_entry_are_ignored(tmp_path: Path) -> None:
    write_book(tmp_path, BOOK, images=range(1, 6), allow=[2])
    _, result = _plan(tmp_path)
    assert result.pages_found == 1 and result.report == []


@pytest.mark.parametrize(
    ("setup", "bad_name", "reason_part"),
    [
        (lambda d: (d / "x3.json").write_text("{}"), "x3.json", "not a number"),
        (lambda d: (d / "03.json").write_text("{}"), "03.json", "duplicate page 3"),
        (lambda d: (d / "7.json").write_text("{}"), "7.json", "has no image"),
        (lambda d: (d / "4.json").write_text("{not json"), "4.json", "not valid JSON"),
        (lambda d: (d / "4.json").write_bytes(b"\xff\xfe\x00garbage"), "4.json", "not valid JSON"),
        (lambda d: (d / "notes.txt").write_text("hi"), "notes.txt", "not a .json"),
        (lambda d: os.symlink("/etc/hostname", d / "5.json"), "5.json", "escapes the root"),
    ],
)
def test_bad_allow_list_entries_are_reported_with_a_reason_and_valid_pages_kept(
    tmp_path: Path, setup, bad_name: str, reason_part: str
) -> None:
    write_book(tmp_path, BOOK, images=range(1, 7), allow=[1, 2, 3, 4, 6])
    book_dir = tmp_path / "allow_list" / "California" / "LincolnHigh" / "2023"
    if bad_name == "5.json":
        (tmp_path / "images/California/LincolnHigh/2023/5.jpg").write_bytes(b"x")
    setup(book_dir)
    store, result = _plan(tmp_path)
    reasons = _reasons(result)
    assert bad_name in reasons and reason_part in reasons[bad_name], reasons
    planned = {r.page for r in store.records()}
    expected = {1, 2, 3, 4, 6} - ({4} if bad_name == "4.json" else set())
    assert planned == expected
    assert store.plan_report()[0][2] == result.report[0].reason  # persisted


def test_unreadable_allow_list_file_is_reported(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        # root reads anything; a folder where a file belongs is unreadable as a file for everyone
        write_book(tmp_path, BOOK, images=range(1, 3), allow=[1])
        (tmp_path / "allow_list/California/LincolnHigh/2023/2.json").mkdir()
        _, result = _plan(tmp_path)
        assert "unexpected folder" in _reasons(result)["2.json"]
    else:  # pragma: no cover - depends on the user running the tests
        write_book(tmp_path, BOOK, images=range(1, 3), allow=[1, 2])
        path = tmp_path / "allow_list/California/LincolnHigh/2023/2.json"
        path.chmod(0)
        _, result = _plan(tmp_path)
        assert "cannot read" in _reasons(result)["2.json"]


@pytest.mark.parametrize(
    ("book", "reason_part"),
    [("CA:bad:school:1900", None), ("CA:ucla:19x0", "not a number")],
)
def test_bad_folder_names_are_reported(tmp_path: Path, book: str, reason_part: str | None) -> None:
    write_book(tmp_path, "CA:ucla:1900", images=[1], allow=[1])
    if book == "CA:bad:school:1900":
        folder = tmp_path / "allow_list" / "CA" / "bad:school" / "1900"
        folder.mkdir(parents=True)
        (folder / "1.json").write_text("{}")
        reason_part = "contains ':'"
    else:
        state, school, year = book.split(":")
        folder = tmp_path / "allow_list" / state / school / year
        folder.mkdir(parents=True)
        (folder / "1.json").write_text("{}")
    store, result = _plan(tmp_path)
    assert any(reason_part in e.reason for e in result.report), result.report
    assert [r.key for r in store.records()] == ["CA:ucla:1900:1"]


def test_non_utf8_names_are_reported_not_crashing(tmp_path: Path) -> None:
    write_book(tmp_path, "CA:ucla:1900", images=[1], allow=[1])
    raw = os.fsencode(tmp_path / "allow_list" / "CA") + b"/sch\xffool"
    os.makedirs(raw)
    _, result = _plan(tmp_path)
    assert any("not valid UTF-8" in e.reason for e in result.report)
    assert result.pages_found == 1


def test_symlinked_book_folder_escaping_the_root_is_reported(tmp_path: Path) -> None:
    outside = tmp_path / "outside" / "1900"
    outside.mkdir(parents=True)
    (outside / "1.json").write_text("{}")
    write_book(tmp_path, "CA:ucla:1900", images=[1], allow=[1])
    os.symlink(outside, tmp_path / "allow_list" / "CA" / "ucla" / "1901")
    _, result = _plan(tmp_path)
    assert any("escapes the root" in e.reason for e in result.report)
    assert result.pages_found == 1


def test_a_missing_root_is_a_configuration_error_naming_the_path(tmp_path: Path) -> None:
    from ocr_assets.plan import CorpusRootMissing

    with pytest.raises(CorpusRootMissing, match=r"paths\.allow_list_root .*nope_allow does not exist"):
        scan_corpus(tmp_path / "nope_images", tmp_path / "nope_allow")
    (tmp_path / "nope_allow").mkdir()
    with pytest.raises(CorpusRootMissing, match=r"paths\.images_root .*nope_images does not exist"):
        scan_corpus(tmp_path / "nope_images", tmp_path / "nope_allow")


def test_hidden_and_os_files_are_skipped_quietly(tmp_path: Path) -> None:
    write_book(tmp_path, "CA:ucla:1900", images=[1, 2], allow=[1, 2])
    book_allow = tmp_path / "allow_list" / "CA" / "ucla" / "1900"
    book_images = tmp_path / "images" / "CA" / "ucla" / "1900"
    for folder in (tmp_path / "allow_list", tmp_path / "allow_list" / "CA", book_allow, book_images):
        (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
        (folder / "Thumbs.db").write_bytes(b"x")
    (book_allow / "._1.json").write_bytes(b"\0\5\26\7")  # AppleDouble: not JSON
    (book_images / "._1.jpg").write_bytes(b"\0\5\26\7")
    (tmp_path / "allow_list" / ".git").mkdir()
    _, result = _plan(tmp_path)
    assert result.report == []
    assert result.pages_found == 2


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"", "empty (0 bytes)"), (b"this is not a jpeg at all", "not a readable image"),
     (b"\xff\xd8\xff\xe0" + b"\0" * 20, "image")],
)
def test_an_empty_or_undecodable_image_is_reported_at_plan_time_and_breaks_the_chain(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    write_book(tmp_path, "CA:ucla:1900", images=[1, 2, 3], allow=[1, 2, 3])
    bad = tmp_path / "images" / "CA" / "ucla" / "1900" / "2.jpg"
    bad.write_bytes(content)
    store, result = _plan(tmp_path)
    assert [(e.path, reason in e.reason) for e in result.report] == [(str(bad), True)]
    records = {r.key: r for r in store.records()}
    assert sorted(records) == ["CA:ucla:1900:1", "CA:ucla:1900:3"]
    assert records["CA:ucla:1900:3"].upstream_key is None  # a gap: page 3 does not wait for the bad page


def test_filters_select_states_schools_and_years(tmp_path: Path) -> None:
    for book in ("CA:ucla:1900", "CA:ucla:1920", "NY:nyu:1900", "CA:usc:1900"):
        write_book(tmp_path, book, images=[1], allow=[1])
    store, _ = _plan(tmp_path, filters=FilterSettings(states=["CA"], schools=["ucla"], year_end=1910))
    assert store.books() == ["CA:ucla:1900"]


def test_replanning_a_grown_corpus_adds_new_books_and_leaves_started_books_alone(tmp_path: Path) -> None:
    write_book(tmp_path, "CA:ucla:1900", images=range(1, 5), allow=[1, 2])
    write_book(tmp_path, "CA:ucla:1901", images=range(1, 5), allow=[1, 2])
    store, first = _plan(tmp_path)
    assert sorted(first.books_added) == ["CA:ucla:1900", "CA:ucla:1901"]
    from ocr_assets.store import ClaimItem

    store.claim("b1", [ClaimItem(key="CA:ucla:1900:1", batch_index=0, prompt_name="p", prompt_version="v",
                                 prompt_vars_hash="h")], engine="local", model="m")
    before = store.get("CA:ucla:1900:1")
    # grow: a new book, a new page in the started book, a new page in the unstarted book
    write_book(tmp_path, "NY:nyu:1910", images=[1], allow=[1])
    write_book(tmp_path, "CA:ucla:1900", images=[], allow=[3])
    write_book(tmp_path, "CA:ucla:1901", images=[], allow=[3])
    _, second = _plan(tmp_path, store)
    assert second.books_added == ["NY:nyu:1910"]
    assert second.books_replanned == ["CA:ucla:1901"]
    assert any("started book CA:ucla:1900 changed" in e.reason and "[3]" in e.reason for e in second.report)
    assert store.get("CA:ucla:1900:1") == before  # untouched, still RUNNING in its batch
    assert store.get("CA:ucla:1900:3") is None  # not applied silently
    assert store.get("CA:ucla:1901:3").upstream_key == "CA:ucla:1901:2"
    _, third = _plan(tmp_path, store)  # idempotent
    assert third.pages_added == 0 and third.books_unchanged == 2
