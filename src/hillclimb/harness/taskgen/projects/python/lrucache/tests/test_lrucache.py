import pytest

from lru import cache


def test_capacity_validation():
    with pytest.raises(ValueError):
        cache.LRUCache(0)


def test_get_put():
    c = cache.LRUCache(2)
    c.put("a", 1)
    assert c.get("a") == 1
    assert c.get("b", "none") == "none"


def test_eviction():
    c = cache.LRUCache(2)
    c.put("a", 1)
    c.put("b", 2)
    c.get("a")
    c.put("c", 3)
    assert c.keys() == ["a", "c"]
    assert len(c) == 2


def test_update_moves_to_end():
    c = cache.LRUCache(2)
    c.put("a", 1)
    c.put("b", 2)
    c.put("a", 10)
    c.put("c", 3)
    assert c.keys() == ["a", "c"]
    assert c.get("a") == 10


def test_hit_rate():
    c = cache.LRUCache(1)
    assert c.hit_rate() == 0.0
    c.put("k", 1)
    c.get("k")
    c.get("x")
    c.get("k")
    assert c.hit_rate() == pytest.approx(2 / 3)
