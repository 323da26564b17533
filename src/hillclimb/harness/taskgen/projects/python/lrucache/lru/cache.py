"""An LRU cache with hit/miss statistics."""

from collections import OrderedDict


class LRUCache:
    def __init__(self, capacity):
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.data = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key, default=None):
        """Value for `key` (marking it most recently used), or `default`."""
        if key in self.data:
            self.data.move_to_end(key)
            self.hits += 1
            return self.data[key]
        self.misses += 1
        return default

    def put(self, key, value):
        """Insert or update; evicts the least recently used entry when full."""
        if key in self.data:
            self.data.move_to_end(key)
        self.data[key] = value
        if len(self.data) > self.capacity:
            self.data.popitem(last=False)

    def __len__(self):
        return len(self.data)

    def hit_rate(self):
        """Fraction of lookups that hit; 0.0 before any lookup."""
        total = self.hits + self.misses
        if total == 0:
            return 0.0
        return self.hits / total

    def keys(self):
        """Keys from least to most recently used."""
        return list(self.data.keys())
