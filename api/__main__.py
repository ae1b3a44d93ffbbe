"""`python -m api`: serve the chat API with uvicorn.

API keys are required (api.api_keys) unless started with --dev: local development mode, no keys,
bound to 127.0.0.1 only. One worker process: the embedded Chroma store allows one process per
directory (a Chroma server scales out). SIGTERM stops taking requests, gives in-flight ones
api.shutdown_grace_s to finish, cancels the rest, and exits 0.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from configs.cli import add_common_arguments, run_cli
from configs.settings import AppSettings, ConfigError, load_settings

logger = logging.getLogger("api")
LOOPBACK_HOST = "127.0.0.1"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m api", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser, config_help="YAML settings profile (see configs/)")
    parser.add_argument("--host", help="bind address (api.host; default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (api.port; default 8000)")
    parser.add_argument("--dev", action="store_true", default=None,
                        help="local development mode (api.dev_mode): no API keys, 127.0.0.1 only")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_cli(lambda: serve(args), debug=args.debug)


def check_bind(settings: AppSettings) -> None:
    """Development mode serves this machine only: refuse any other bind address."""
    if settings.api.dev_mode and not settings.api.api_keys and settings.api.host != LOOPBACK_HOST:
        raise ConfigError(f"development mode (no API keys) binds {LOOPBACK_HOST} only, not {settings.api.host}; "
                          "configure api.api_keys to serve other machines")


def serve(args: argparse.Namespace) -> int:
    settings = load_settings(args.config, {"api.host": args.host, "api.port": args.port, "api.dev_mode": args.dev})
    check_bind(settings)

    import uvicorn

    from api.app import create_app
    from api.logs import configure_logging

    app = create_app(settings)  # refuses to build without keys outside development mode
    configure_logging(json_lines=settings.api.log_json, level=logging.DEBUG if args.debug else logging.INFO)
    if settings.api.dev_mode and not settings.api.api_keys:
        logger.warning("local development mode: no API keys required; listening on %s only", LOOPBACK_HOST)
    if settings.vector_store.server_url is None:
        logger.info("embedded Chroma store: serving with one worker (use a Chroma server to scale out)")
    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal to the handler it found: make
    # that one a no-op, so a requested stop exits 0 instead of dying by the signal (143).
    signal.signal(signal.SIGTERM, lambda signum, frame: logger.info("stopped by SIGTERM"))
    # On a taken port uvicorn logs the reason and exits with status 1.
    uvicorn.run(
        app,
        host=settings.api.host,
        port=settings.api.port,
        log_config=None,  # keep the handlers configured above (JSON lines)
        access_log=False,  # the app logs one line per request, with its request id
        timeout_graceful_shutdown=settings.api.shutdown_grace_s,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
