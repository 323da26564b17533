"""Error types shared by every stage.

`HillclimbError` is the one exception the CLI turns into a clean one-line message (exit 2):
raise it (or a subclass) for bad input, never for bugs, so users see what to fix instead of a
traceback.
"""


class HillclimbError(Exception):
    """A user-facing error: bad input, missing artifact, impossible configuration."""


class ConfigError(HillclimbError, ValueError):
    """An invalid configuration (also a ValueError, so library callers can catch either)."""
