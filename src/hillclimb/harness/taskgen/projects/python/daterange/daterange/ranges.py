"""Closed date ranges [start, end]."""

from datetime import date, timedelta


class DateRange:
    def __init__(self, start, end):
        if end < start:
            raise ValueError("end before start")
        self.start = start
        self.end = end

    def days(self):
        """Number of days in the range, both ends included."""
        return (self.end - self.start).days + 1

    def contains(self, day):
        """True when `day` lies in the range."""
        return self.start <= day <= self.end

    def overlaps(self, other):
        """True when the two ranges share at least one day."""
        return self.start <= other.end and other.start <= self.end

    def intersection(self, other):
        """The shared range, or None."""
        if not self.overlaps(other):
            return None
        return DateRange(max(self.start, other.start), min(self.end, other.end))

    def each_day(self):
        """Every day in the range, in order."""
        return [self.start + timedelta(days=i) for i in range(self.days())]


def weekdays_between(start, end):
    """Count Monday-Friday days in [start, end]."""
    count = 0
    for day in DateRange(start, end).each_day():
        if day.weekday() < 5:
            count += 1
    return count


def parse_range(text):
    """Parse 'YYYY-MM-DD..YYYY-MM-DD'."""
    if ".." not in text:
        raise ValueError("expected START..END")
    a, b = text.split("..", 1)
    return DateRange(date.fromisoformat(a.strip()), date.fromisoformat(b.strip()))
