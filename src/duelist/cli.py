"""The ``duelist`` command: a thin layer from arguments to library calls.

Each subcommand lives next to the code it drives and registers itself here (``COMMANDS``); heavy
imports happen only when a subcommand runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = [
    "duelist.train.cli",
    "duelist.eval.cli",
    "duelist.data.tasks.cli",
    "duelist.losses.cli",
    "duelist.online.cli",
    "duelist.rewards.cli",
    "duelist.games.cli",
    "duelist.eval.commands",
    "duelist.eval.tournament.cli",
    "duelist.data.check_cli",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="duelist", description="Align language models with preference data.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # key=value overrides may come before or after flags (`train cfg.yaml --resume loss.beta=0.2`)
    args, extra = parser.parse_known_args(argv)
    if extra:
        if not hasattr(args, "args") or any(a.startswith("-") for a in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.args = [*args.args, *extra]
    _quiet_libraries()
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `duelist tasks | head -3`: the reader left; stop quietly as Unix tools do
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit flush does not fail again
        return 141
    except Exception as e:  # known user errors get one clean line, everything else a traceback
        from duelist.errors import USER_ERRORS

        if isinstance(e, USER_ERRORS):
            print(f"duelist {args.command}: error: {e}", file=sys.stderr)
            return 2
        raise


def _quiet_libraries() -> None:
    """duelist draws its own progress; silence per-file loading bars and advisory warnings."""
    import os
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", module="transformers")
    try:
        from transformers.utils import logging

        logging.disable_progress_bar()
        logging.set_verbosity_error()
    except ImportError:
        pass


if __name__ == "__main__":
    sys.exit(main())
