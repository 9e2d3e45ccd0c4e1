"""Sizes people write (``--max-size 100MB``) and the ones sizewise prints."""

import pytest

from sizewise.core.units import format_bytes, parse_bytes


@pytest.mark.parametrize("text, n", [("105453856", 105453856), ("100MB", 100_000_000), ("95.5MiB", int(95.5 * 2**20)),
                                     ("1.5 GiB", int(1.5 * 2**30)), ("12kb", 12_000), (4096, 4096)])
def test_sizes_parse_with_decimal_and_binary_units(text, n):
    assert parse_bytes(text) == n


@pytest.mark.parametrize("text", ["", "MB", "-5MB", "0", "12 parsecs", "1e6"])
def test_what_is_not_a_size_is_refused_with_an_example(text):
    with pytest.raises(ValueError, match="size"):
        parse_bytes(text)


def test_a_printed_size_parses_back_to_about_itself():
    printed = format_bytes(100.6 * 2**20).replace(" ", "")  # "101MiB" at 3 significant digits
    assert abs(parse_bytes(printed) - 100.6 * 2**20) < 0.01 * 2**27
