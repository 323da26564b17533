"""Bank accounts and transfers."""
