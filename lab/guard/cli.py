"""What the guard's CLIs share: the common flags (configs.cli) plus --data-dir, and one way to run."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from configs.cli import add_common_arguments, configure_logging, run_cli
from configs.settings import AppSettings, load_settings


def base_parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_common_arguments(parser, config_help="YAML settings profile (configs/*.yaml)")
    parser.add_argument("--data-dir", type=Path, help="shared data folder (default: the data_dir setting, ../shared/data)")
    return parser


def settings_from(args: argparse.Namespace, overrides: dict[str, Any] | None = None) -> AppSettings:
    return load_settings(args.config, {"data_dir": args.data_dir, **(overrides or {})})


def run(main: Callable[[argparse.Namespace], int], parser: argparse.ArgumentParser, argv: list[str] | None) -> int:
    """Parse, then run under the project's CLI convention (one-line errors, exit status 2)."""
    args = parser.parse_args(argv)
    configure_logging(args.debug)
    return run_cli(lambda: main(args), debug=args.debug)
