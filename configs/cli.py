"""The one command-line convention every `python -m` tool of the project follows.

- `--help` answers at once (heavy imports happen after parsing), `--config FILE` takes a YAML profile,
  `--debug` turns on debug logs and tracebacks.
- A known error (an `AppError`: bad settings, data, model or store; or a file that cannot be read) is one
  line on stderr, `error: <what to do>`, and exit status 2, as argparse uses for bad usage.
- Anything else is one line too, with the exception's type, and exit status 1; `--debug` shows the traceback.
- Ctrl-C exits 130. Status 0 is success; a tool may document result codes of its own from 3 up.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from configs.errors import AppError

EXIT_OK = 0
EXIT_UNEXPECTED = 1
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


def add_common_arguments(parser: argparse.ArgumentParser, *, config_help: str = "YAML settings profile") -> None:
    parser.add_argument("--config", type=Path, metavar="FILE", help=config_help)
    parser.add_argument("--debug", action="store_true", help="debug logs, and tracebacks on errors")


def configure_logging(debug: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


def run_cli(command: Callable[[], int | None], *, debug: bool) -> int:
    """Run a parsed command and turn whatever it raises into the convention above."""
    try:
        return command() or EXIT_OK
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (AppError, OSError) as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:  # the promise: one line, not a traceback, unless --debug
        if debug:
            raise
        print(f"error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", file=sys.stderr)
        return EXIT_UNEXPECTED
