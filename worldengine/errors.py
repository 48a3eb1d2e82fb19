"""The one exception type users see from the engine."""


class WaypointError(ValueError):
    """A user-facing failure: bad file, key, shape, value or option. The message names it."""
