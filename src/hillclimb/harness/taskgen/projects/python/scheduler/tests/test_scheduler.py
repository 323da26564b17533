import pytest

from scheduler import jobs, queue


def test_sort_key():
    a = jobs.Job("a", 1, 5)
    b = jobs.Job("b", 2, 9)
    assert sorted([a, b], key=lambda j: j.sort_key()) == [b, a]


def test_validate():
    with pytest.raises(ValueError):
        jobs.validate(jobs.Job("x", 1, 3, duration=0))
    with pytest.raises(ValueError):
        jobs.validate(jobs.Job("x", 1, -1))


def test_pop_order():
    q = queue.JobQueue()
    q.push(jobs.Job("low", 1, 1))
    q.push(jobs.Job("high", 5, 10))
    q.push(jobs.Job("high2", 5, 3))
    assert [q.pop().name for _ in range(3)] == ["high2", "high", "low"]
    with pytest.raises(IndexError):
        q.pop()


def test_plan():
    q = queue.JobQueue()
    q.push(jobs.Job("a", 1, 10, duration=2))
    q.push(jobs.Job("b", 3, 10, duration=3))
    assert q.plan() == [("b", 0, 3), ("a", 3, 5)]


def test_late_jobs():
    q = queue.JobQueue()
    q.push(jobs.Job("a", 1, 4, duration=2))
    q.push(jobs.Job("b", 3, 3, duration=3))
    assert q.late_jobs() == ["a"]
