from datetime import date

import pytest

from daterange import ranges


def r(a, b):
    return ranges.DateRange(date.fromisoformat(a), date.fromisoformat(b))


def test_days():
    assert r("2024-01-01", "2024-01-31").days() == 31
    assert r("2024-02-01", "2024-02-01").days() == 1


def test_invalid():
    with pytest.raises(ValueError):
        r("2024-02-02", "2024-02-01")


def test_contains():
    x = r("2024-01-10", "2024-01-20")
    assert x.contains(date(2024, 1, 10))
    assert x.contains(date(2024, 1, 20))
    assert not x.contains(date(2024, 1, 21))


def test_overlaps():
    assert r("2024-01-01", "2024-01-10").overlaps(r("2024-01-10", "2024-01-12"))
    assert not r("2024-01-01", "2024-01-09").overlaps(r("2024-01-10", "2024-01-12"))


def test_intersection():
    got = r("2024-01-01", "2024-01-10").intersection(r("2024-01-05", "2024-01-20"))
    assert (got.start, got.end) == (date(2024, 1, 5), date(2024, 1, 10))
    assert r("2024-01-01", "2024-01-02").intersection(r("2024-01-05", "2024-01-06")) is None


def test_each_day():
    days = r("2024-02-28", "2024-03-01").each_day()
    assert days == [date(2024, 2, 28), date(2024, 2, 29), date(2024, 3, 1)]


def test_weekdays_between():
    assert ranges.weekdays_between(date(2024, 1, 1), date(2024, 1, 7)) == 5


def test_parse_range():
    got = ranges.parse_range("2024-03-01 .. 2024-03-05")
    assert got.days() == 5
    with pytest.raises(ValueError):
        ranges.parse_range("2024-03-01")
