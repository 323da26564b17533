import pytest

from inventory import models, store


def make():
    inv = store.Inventory()
    inv.add("A1", "apple", 0.5, 10)
    inv.add("B2", "bread", 2.0, 3)
    return inv


def test_item_value():
    assert models.Item("x", "x", 2.5, 4).value() == 10.0


def test_item_is_low():
    assert models.Item("x", "x", 1.0, 2).is_low(3)
    assert not models.Item("x", "x", 1.0, 3).is_low(3)


def test_add_duplicate_raises():
    inv = make()
    with pytest.raises(ValueError):
        inv.add("A1", "again", 1.0)


def test_add_negative_price_raises():
    with pytest.raises(ValueError):
        store.Inventory().add("Z", "z", -1.0)


def test_restock():
    inv = make()
    assert inv.restock("B2", 4) == 7


def test_restock_rejects_zero():
    with pytest.raises(ValueError):
        make().restock("B2", 0)


def test_remove():
    inv = make()
    assert inv.remove("A1", 10) == 0


def test_remove_too_many():
    with pytest.raises(ValueError):
        make().remove("B2", 4)


def test_total_value():
    assert make().total_value() == pytest.approx(11.0)


def test_low_stock():
    inv = make()
    assert inv.low_stock() == ["B2"]
    assert inv.low_stock(threshold=11) == ["A1", "B2"]
