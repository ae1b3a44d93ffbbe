"""`python -m ingest PATH...`: add files and folders to the knowledge base."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from configs.settings import ConfigError, load_settings
from ingest.loaders import LOADERS

EXIT_OK, EXIT_ALL_FAILED, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ingest",
        description="Load, chunk and embed documents into the Chroma knowledge base. "
        "Re-running is safe: unchanged chunks are recognised and a changed file replaces its old chunks.",
        epilog=f"Supported types: {', '.join(sorted(LOADERS))}. Folders are searched recursively. "
        "Exit status: 0 done, 1 every file failed (or the store is unusable), 2 usage or config error.",
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="files or folders to ingest")
    parser.add_argument("--config", type=Path, metavar="FILE", help="YAML settings profile")
    parser.add_argument("--collection", metavar="NAME", help="Chroma collection (vector_store.collection)")
    parser.add_argument("--persist-dir", type=Path, metavar="DIR", help="embedded store directory (vector_store.persist_dir)")
    parser.add_argument("--server-url", metavar="URL", help="Chroma server, http://host:port (vector_store.server_url)")
    parser.add_argument("--debug", action="store_true", help="debug logging and full tracebacks")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Imported after parsing so that `--help` answers without loading Chroma.
    from ingest.pipeline import IngestError, ingest_paths
    from retrieval.store import VectorStoreError

    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.debug:
        # pypdf warns about every damaged PDF (the summary reports them); bitsandbytes, imported by
        # sentence-transformers via peft, warns about a 4-bit CPU kernel that embedding never uses.
        for noisy in ("pypdf", "bitsandbytes"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        settings = load_settings(
            args.config,
            {
                "vector_store.collection": args.collection,
                "vector_store.persist_dir": args.persist_dir,
                "vector_store.server_url": args.server_url,
            },
        )
        report = ingest_paths(args.paths, settings, progress=True)
    except (ConfigError, IngestError) as exc:
        return _fail(exc, EXIT_USAGE, args.debug)
    except VectorStoreError as exc:
        return _fail(exc, EXIT_ALL_FAILED, args.debug)
    except KeyboardInterrupt:
        print("ingest: interrupted; chunks written so far are kept, re-run to finish", file=sys.stderr)
        return 130
    except Exception as exc:  # anything else still gets one line, not a traceback
        return _fail(exc, EXIT_ALL_FAILED, args.debug, prefix="unexpected error: ")
    print(report.summary())
    every_file_failed = report.files_seen > 0 and report.files_ingested == 0
    return EXIT_ALL_FAILED if every_file_failed else EXIT_OK


def _fail(exc: BaseException, code: int, debug: bool, prefix: str = "") -> int:
    if debug:
        raise exc
    print(f"ingest: error: {prefix}{exc} (rerun with --debug for details)", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
