"""An inventory of items keyed by SKU."""

from inventory.models import Item


class Inventory:
    def __init__(self):
        self.items = {}

    def add(self, sku, name, price, quantity=0):
        """Add a new item; raises ValueError if the SKU exists or the price is negative."""
        if sku in self.items:
            raise ValueError(f"duplicate sku {sku}")
        if price < 0:
            raise ValueError("price must be non-negative")
        self.items[sku] = Item(sku, name, price, quantity)
        return self.items[sku]

    def restock(self, sku, amount):
        """Increase the quantity of an item; amount must be positive."""
        if amount <= 0:
            raise ValueError("amount must be positive")
        item = self.items[sku]
        item.quantity = item.quantity + amount
        return item.quantity

    def remove(self, sku, amount):
        """Take `amount` units out of stock; raises ValueError if there are not enough."""
        item = self.items[sku]
        if amount > item.quantity:
            raise ValueError("not enough stock")
        item.quantity = item.quantity - amount
        return item.quantity

    def total_value(self):
        """Value of everything in stock."""
        total = 0.0
        for item in self.items.values():
            total = total + item.value()
        return total

    def low_stock(self, threshold=5):
        """SKUs whose quantity is below `threshold`, sorted."""
        return sorted(sku for sku, item in self.items.items() if item.is_low(threshold))
