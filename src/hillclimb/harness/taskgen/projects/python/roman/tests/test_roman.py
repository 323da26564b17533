import pytest

from roman import numerals


def test_to_roman():
    assert numerals.to_roman(1994) == "MCMXCIV"
    assert numerals.to_roman(4) == "IV"
    assert numerals.to_roman(3999) == "MMMCMXCIX"


def test_to_roman_range():
    with pytest.raises(ValueError):
        numerals.to_roman(0)
    with pytest.raises(ValueError):
        numerals.to_roman(4000)


def test_from_roman():
    assert numerals.from_roman("mcmxciv") == 1994
    assert numerals.from_roman("XL") == 40


def test_from_roman_invalid():
    with pytest.raises(ValueError):
        numerals.from_roman("IIII")
    with pytest.raises(ValueError):
        numerals.from_roman("ABC")
