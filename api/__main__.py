"""`python -m api`: serve the chat API with uvicorn.

One worker process: the embedded Chroma store allows one process per directory (a Chroma server scales out).
"""

from __future__ import annotations

import argparse
import logging
import sys

from configs.cli import add_common_arguments, run_cli
from configs.settings import load_settings

logger = logging.getLogger("api")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m api", description=__doc__)
    add_common_arguments(parser, config_help="YAML settings profile (see configs/)")
    parser.add_argument("--host", help="bind address (api.host; default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (api.port; default 8000)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_cli(lambda: serve(args), debug=args.debug)


def serve(args: argparse.Namespace) -> int:
    settings = load_settings(args.config, {"api.host": args.host, "api.port": args.port})

    import uvicorn

    from api.app import create_app
    from api.logs import configure_logging

    configure_logging(json_lines=settings.api.log_json, level=logging.DEBUG if args.debug else logging.INFO)
    if settings.vector_store.server_url is None:
        logger.info("embedded Chroma store: serving with one worker (use a Chroma server to scale out)")
    # On a taken port uvicorn logs the reason and exits with status 1.
    uvicorn.run(
        create_app(settings),
        host=settings.api.host,
        port=settings.api.port,
        log_config=None,  # keep the handlers configured above (JSON lines)
        access_log=False,  # the app logs one line per request, with its request id
    )
    return 0

if __name__ == "__main__":
    sys.exit(main())
