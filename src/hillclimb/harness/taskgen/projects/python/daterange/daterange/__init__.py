"""Date ranges."""
