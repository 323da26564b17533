"""Items kept in stock."""

from dataclasses import dataclass


@dataclass
class Item:
    sku: str
    name: str
    price: float
    quantity: int = 0

    def value(self):
        """Total value of this item's stock."""
        return self.price * self.quantity

    def is_low(self, threshold):
        """True when the quantity is below `threshold`."""
        return self.quantity < threshold
