"""What the safety CLIs share: the --config/--debug flags and the one-line error exit."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from configs.settings import AppSettings, ConfigError, load_settings


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", type=Path, help="YAML settings profile (configs/*.yaml)")
    parser.add_argument("--data-dir", type=Path, help="shared data folder (default: safety.data_dir)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    return parser


def settings_from(args: argparse.Namespace, overrides: dict[str, Any] | None = None) -> AppSettings:
    return load_settings(args.config, {"safety.data_dir": args.data_dir, **(overrides or {})})


def run(main: Callable[[argparse.Namespace], int], parser: argparse.ArgumentParser, argv: list[str] | None) -> int:
    """Parse, run, and turn a known error into one line on stderr and exit status 1 (unless --debug)."""
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from agents.safety.training_data import SafetyDataError

    try:
        return main(args)
    except (ConfigError, SafetyDataError, OSError, ValueError, RuntimeError) as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
