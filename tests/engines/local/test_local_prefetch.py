"""Background decoding: batches in order, upright RGB within the size limit, bad images as fatal failures."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from PIL import Image

from ocr_assets.engines.local import prefetch as prefetch_module
from ocr_assets.engines.local.prefetch import IMAGE_UNREADABLE, load_page_image, prefetch_batches, prepare_page
from ocr_assets.schema import ErrorClass
from tests.engines.local.local_helpers import make_request


def _image(path: Path, size=(40, 20), color="white", mode="RGB", **save) -> Path:
    Image.new(mode, size, color).save(path, **save)
    return path


def test_images_come_back_upright_rgb_and_within_the_size_limit(tmp_path: Path) -> None:
    gray = _image(tmp_path / "gray.png", size=(3000, 1000), mode="L", color=200)
    image, scale = load_page_image(gray, max_side=1500)
    assert image.mode == "RGB"
    assert image.size == (1500, 500)
    assert scale == pytest.approx(2.0)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90° clockwise: the upright page is portrait
    path = _image(tmp_path / "rotated.jpg", size=(60, 30), format="JPEG", exif=exif)
    image, scale = load_page_image(path, max_side=1000)
    assert image.size == (30, 60)
    assert scale == 1.0


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.png", None, "does not exist"),
        ("empty.png", b"", "empty (0 bytes)"),
        ("corrupt.jpg", b"\xff\xd8\xff\xe0 this is not really a jpeg", "cannot decode"),
        ("text.png", b"hello, I am text", "cannot decode"),
    ],
)
def test_unreadable_images_become_fatal_page_failures(tmp_path: Path, name, content, message) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    prepared = prepare_page(make_request("CA:x:1900:1", path), max_side=1000)
    assert prepared.image is None
    assert prepared.failure is not None
    assert prepared.failure.key == "CA:x:1900:1"
    assert prepared.failure.error_class == ErrorClass.FATAL
    assert prepared.failure.error_type == IMAGE_UNREADABLE
    assert message in prepared.failure.message


def test_a_truncated_image_is_a_fatal_failure_not_a_crash(tmp_path: Path) -> None:
    whole = _image(tmp_path / "whole.jpg", size=(400, 400), format="JPEG").read_bytes()
    path = tmp_path / "truncated.jpg"
    path.write_bytes(whole[: len(whole) // 3])
    prepared = prepare_page(make_request("k", path), max_side=1000)
    assert prepared.failure is not None and prepared.failure.error_type == IMAGE_UNREADABLE


def test_batches_come_in_request_order_with_failures_in_place(tmp_path: Path) -> None:
    requests = []
    for index in range(11):
        path = tmp_path / f"{index}.png"
        if index == 4:
            path.write_bytes(b"")
        else:
            _image(path, size=(10 + index, 10))
        requests.append(make_request(f"CA:x:1900:{index}", path))
    batches = list(prefetch_batches(requests, 3, max_side=100, workers=3))
    assert [len(batch) for batch in batches] == [3, 3, 3, 2]
    flat = [page for batch in batches for page in batch]
    assert [page.request.key for page in flat] == [r.key for r in requests]
    assert [page.failure is not None for page in flat] == [index == 4 for index in range(11)]
    assert [page.image.size[0] for page in flat if page.image] == [10 + i for i in range(11) if i != 4]


def test_decoding_runs_ahead_on_background_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    threads: set[str] = set()
    real = prefetch_module.prepare_page

    def spy(request, max_side):
        threads.add(threading.current_thread().name)
        return real(request, max_side)

    monkeypatch.setattr(prefetch_module, "prepare_page", spy)
    requests = [make_request(str(i), _image(tmp_path / f"{i}.png")) for i in range(6)]
    batches = prefetch_batches(requests, 2, max_side=100, workers=2, ahead_batches=1)
    next(batches)
    assert all(name.startswith("page-prefetch") for name in threads)
    assert len(list(batches)) == 2


def test_stopping_early_shuts_the_decoders_down(tmp_path: Path) -> None:
    requests = [make_request(str(i), _image(tmp_path / f"{i}.png")) for i in range(8)]
    batches = prefetch_batches(requests, 2, max_side=100)
    next(batches)
    batches.close()  # no hang, no leaked pool


def test_prefetch_rejects_nonsense_sizes(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        list(prefetch_batches([], 0, max_side=100))
