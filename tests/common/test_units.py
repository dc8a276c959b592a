"""common.units.parse_size: the one parser of byte sizes on command lines (bench scripts, ffs bench)."""

import pytest

from fireflyfs.common.units import parse_positive_size, parse_size, parse_size_or_percent


@pytest.mark.parametrize("text, expected", [
    ("4096", 4096), ("4KiB", 4096), ("4k", 4096), ("4 KB", 4096), ("256MiB", 256 << 20),
    ("1g", 1 << 30), ("1GiB", 1 << 30), ("2T", 2 << 40), (" 0 ", 0),
])
def test_sizes_in_binary_units(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "GiB", "1.5GiB", "-1", "4 XB", "1GiBs"])
def test_non_sizes_are_rejected(text):
    with pytest.raises(ValueError, match="bad size"):
        parse_size(text)


def test_positive_size_rejects_zero():
    assert parse_positive_size("1KiB") == 1024
    with pytest.raises(ValueError, match="positive"):
        parse_positive_size("0")


@pytest.mark.parametrize("text, expected", [
    ("5%", (None, 0.05)), ("2.5 %", (None, 0.025)), ("100%", (None, 1.0)), ("1GiB", (1 << 30, None)),
    ("0", (0, None)),
])
def test_size_or_percent(text, expected):
    assert parse_size_or_percent(text) == expected


@pytest.mark.parametrize("text", ["101%", "%", "5%%", "-5%", "five"])
def test_bad_size_or_percent_is_rejected(text):
    with pytest.raises(ValueError):
        parse_size_or_percent(text)
