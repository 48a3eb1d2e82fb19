"""The one exception type users see from the engine, and string options that fail with one."""
import enum
import re


class WaypointError(ValueError):
    """A user-facing failure: bad file, key, shape, value or option. The message names it."""


class Choice(str, enum.Enum):
    """A string option (for node combos and CLI flags) that parses with an error listing the choices."""

    @classmethod
    def label(cls) -> str:
        """What the option is called in messages: the class name in words ("FitMode" -> "fit mode")."""
        return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", cls.__name__).lower()

    @classmethod
    def parse(cls, value):
        try:
            return cls(value.lower() if isinstance(value, str) else value)
        except ValueError:
            options = ", ".join(member.value for member in cls)
            raise WaypointError(f"unknown {cls.label()} {value!r}; choose one of: {options}") from None
