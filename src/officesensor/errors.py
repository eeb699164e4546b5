"""The project's exceptions. Foreign errors are translated into these where they enter."""


class OfficeSensorError(Exception):
    """Base class for every error this package raises on purpose."""


class ConfigError(OfficeSensorError):
    """A setting is invalid. The message names the setting and what is wrong with it."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}")
        self.setting = setting
        self.problem = problem


class StoreError(OfficeSensorError):
    """The store could not complete an operation (locked, full, unreachable)."""


class BrokerError(OfficeSensorError):
    """The MQTT broker could not be reached or refused us."""
