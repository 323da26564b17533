"""A least-recently-used cache."""
