"""Errors that are the user's to fix (bad config, bad data, missing files, a busy or changed run folder,
a damaged run, a diverged run): printed as one line without a traceback, exit code 2."""

from duelist.config import ConfigError
from duelist.data.sources import DataError
from duelist.eval.tournament.entrants import EntrantFailed
from duelist.losses import LossConfigError
from duelist.rewards.registry import KindConfigError
from duelist.train.checkpoint import CheckpointError
from duelist.train.lock import RunLockedError
from duelist.train.nonfinite import NonFiniteError
from duelist.train.resume_guard import ResumeConfigError

USER_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError,
    DataError,
    LossConfigError,
    KindConfigError,
    CheckpointError,
    RunLockedError,
    ResumeConfigError,
    NonFiniteError,
    EntrantFailed,
    FileExistsError,
    FileNotFoundError,
)
