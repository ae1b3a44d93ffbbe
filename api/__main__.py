"""`python -m api`: serve the chat API with uvicorn.

One worker process: the embedded Chroma store allows one process per directory (a Chroma server scales out).
"""

from __future__ import annotations

import argparse
import logging
import sys

from configs.settings import ConfigError, load_settings

logger = logging.getLogger("api")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m api", description=__doc__)
    parser.add_argument("--config", help="YAML settings profile (see configs/)")
    parser.add_argument("--host", help="bind address (api.host; default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (api.port; default 8000)")
    parser.add_argument("--debug", action="store_true", help="debug logging; tracebacks on the console")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = load_settings(args.config, {"api.host": args.host, "api.port": args.port})
    except ConfigError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2

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
