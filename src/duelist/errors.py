"""Errors that are the user's to fix (bad config, bad data, missing files): printed without a traceback."""

from duelist.config import ConfigError
from duelist.data.sources import DataError
from duelist.losses import LossConfigError
from duelist.rewards.registry import KindConfigError
from duelist.train.checkpoint import CheckpointError

USER_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError,
    DataError,
    LossConfigError,
    KindConfigError,
    CheckpointError,
    FileExistsError,
    FileNotFoundError,
)
