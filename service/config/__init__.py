"""Configuration the way LangGraph users write it, and the one error every bad setting raises."""


class ConfigError(ValueError):
    """A setting is missing or invalid; the message is one line and names the variable."""
