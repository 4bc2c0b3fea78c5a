"""User-facing errors: the CLI prints their message on one line and exits non-zero, no traceback."""


class DDPMError(Exception):
    """Base class of every error caused by bad input (config, files, flags, storages)."""

    exit_code = 2


class ConfigError(DDPMError):
    """A config file, key or value is not allowed; the message names file, key and value."""


class DataError(DDPMError):
    """A dataset file is missing or corrupt."""


class CheckpointError(DDPMError):
    """A checkpoint is missing, truncated or not one of ours."""


class TrainingDiverged(DDPMError):
    """The loss became NaN or infinite."""
