import os
import time
from pathlib import Path

import pytest

from ocr_assets.outputs import STALE_TEMP_S, OutputFile, file_sha256, output_path, read_output, write_outputs
from ocr_assets.schema import OcrPageResult


def _page(page: int, school: str = "ucla") -> bytes:
    return OcrPageResult.model_validate({
        "raw_ocr": {"text_blocks": [{"block_id": 1, "position": [0, 0, 10, 10], "text": f"page {page}"}]},
        "page_info": {"page_number": page, "is_complete_page": True, "content_type": "course_listing"},
        "school_name": school, "catalog_year": 1900, "courses": [],
    }).to_json_bytes()


def _temps(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def test_a_batch_of_outputs_lands_whole_with_the_bytes_and_hashes_it_names(tmp_path: Path) -> None:
    files = [OutputFile.of(tmp_path, f"CA:{school}:1900:{page}", _page(page, school))
             for school in ("ucla", "usc") for page in range(1, 6)]
    write_outputs(files)
    for file in files:
        assert file.path == output_path(tmp_path, file.key)
        assert file.path.read_bytes() == file.data and file.data.endswith(b"\n")
        assert file_sha256(file.path) == file.sha256
        assert read_output(file.path).page_info.page_number == int(file.key.rpartition(":")[2])
    assert _temps(tmp_path) == []


def test_a_batch_that_fails_midway_renames_nothing_and_leaves_no_temp_files(tmp_path: Path) -> None:
    kept = OutputFile.of(tmp_path, "CA:ucla:1900:1", _page(1))
    write_outputs([kept])
    blocked = output_path(tmp_path, "CA:usc:1900:1").parent
    blocked.parent.mkdir(parents=True)
    blocked.write_text("a file where the book's folder should be")
    with pytest.raises(OSError):
        write_outputs([OutputFile.of(tmp_path, "CA:ucla:1900:1", _page(7)),
                       OutputFile.of(tmp_path, "CA:ucla:1900:2", _page(2)),
                       OutputFile.of(tmp_path, "CA:usc:1900:1", _page(1, "usc"))])
    assert kept.path.read_bytes() == kept.data  # the old output, not page 7
    assert not output_path(tmp_path, "CA:ucla:1900:2").exists()
    assert _temps(tmp_path) == []


def test_writing_outputs_sweeps_temp_files_a_killed_writer_left_but_not_fresh_ones(tmp_path: Path) -> None:
    key = "CA:ucla:1900:3"
    folder = output_path(tmp_path, key).parent
    folder.mkdir(parents=True)
    stale, fresh = folder / ".3.json.abandoned.tmp", folder / ".4.json.in-flight.tmp"
    keep = folder / ".notes.txt"  # not one of ours
    for path in (stale, fresh, keep):
        path.write_text("partial")
    old = time.time() - STALE_TEMP_S - 60
    os.utime(stale, (old, old))
    os.utime(keep, (old, old))
    file = OutputFile.of(tmp_path, key, _page(3))
    write_outputs([file])
    assert read_output(file.path).page_info.page_number == 3
    assert sorted(p.name for p in folder.iterdir()) == sorted([".4.json.in-flight.tmp", ".notes.txt", "3.json"])


def test_outputs_get_the_usual_permissions_not_a_temp_files_owner_only_mode(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        file = OutputFile.of(tmp_path, "CA:ucla:1900:1", _page(1))
        write_outputs([file])
    finally:
        os.umask(umask)
    assert file.path.stat().st_mode & 0o777 == 0o644  # readable by the group and others, as `open` makes it
