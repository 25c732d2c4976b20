import pytest

from ocr_assets.keys import BookKey, KeyFormatError, RecordKey, check_name_part


def test_record_keys_round_trip_with_an_unpadded_page() -> None:
    key = RecordKey.parse("CA:lincoln_high:1923:4")
    assert key.book == BookKey("CA", "lincoln_high", 1923)
    assert key.page == 4
    assert str(key) == "CA:lincoln_high:1923:4"


@pytest.mark.parametrize("text", ["CA:x", "CA:x:19a3:1", "CA:x:1923:p1", "", "a:b:c:d:e"])
def test_malformed_keys_are_rejected(text: str) -> None:
    with pytest.raises(KeyFormatError):
        RecordKey.parse(text)


@pytest.mark.parametrize(
    ("name", "problem"),
    [("ucla", None), ("Lincoln High", None), ("a:b", "':'"), ("a/b", "path separator"), ("..", "relative"),
     ("", "empty"), ("a...b", "'...'"), ("caf\u00e9", None), ("a*b", "characters")],
)
def test_name_parts_are_checked_with_a_reason(name: str, problem: str | None) -> None:
    reason = check_name_part(name, "school")
    if problem is None:
        assert reason is None
    else:
        assert reason is not None and problem in reason


@pytest.mark.parametrize("key", ["ca:..:1900:1", "..:x:1900:2", "ca:a/b:1900:1", "ca::1900:1", "ca:.:1900:3"])
def test_a_key_that_could_escape_the_output_root_is_rejected(key: str) -> None:
    with pytest.raises(KeyFormatError):
        RecordKey.parse(key)
