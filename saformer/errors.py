"""The project's error hierarchy.

Every error a user can cause (bad config, bad data, bad checkpoint, wrong tensor shape) is one of
these, with a message naming what is wrong and where. The CLI prints them without a traceback.
"""


class SaformerError(Exception):
    """Base of every error the project raises on purpose."""


class ConfigError(SaformerError, ValueError):
    """An unknown config name, an invalid override, or a geometry the config cannot take."""


class DataError(SaformerError):
    """A data set that is missing, malformed or does not fit the model."""


class CheckpointError(SaformerError):
    """A checkpoint or run directory that is missing, corrupt, or from another config."""


class ShapeError(SaformerError, ValueError):
    """A tensor whose shape does not match what a layer expects."""
