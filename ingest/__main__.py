"""`python -m ingest PATH...`: add files and folders to the knowledge base."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from configs.cli import EXIT_INTERRUPTED, add_common_arguments, configure_logging, run_cli
from configs.settings import load_settings
from ingest.loaders import LOADERS

# Besides configs.cli's codes (0 done, 2 a known error such as bad settings or an unusable store):
EXIT_ALL_FAILED = 3  # every file failed to load


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ingest",
        description="Load, chunk and embed documents into the Chroma knowledge base. "
        "Re-running is safe: unchanged chunks are recognised and a changed file replaces its old chunks.",
        epilog=f"Supported types: {', '.join(sorted(LOADERS))}. Folders are searched recursively. "
        "Exit status: 0 done, 2 usage, settings or store error, 3 every file failed, 1 unexpected error.",
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="files or folders to ingest")
    add_common_arguments(parser)
    parser.add_argument("--collection", metavar="NAME", help="Chroma collection (vector_store.collection)")
    parser.add_argument("--persist-dir", type=Path, metavar="DIR", help="embedded store directory (vector_store.persist_dir)")
    parser.add_argument("--server-url", metavar="URL", help="Chroma server, http://host:port (vector_store.server_url)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.debug)
    if not args.debug:
        # pypdf warns about every damaged PDF (the summary reports them); bitsandbytes, imported by
        # sentence-transformers via peft, warns about a 4-bit CPU kernel that embedding never uses.
        for noisy in ("pypdf", "bitsandbytes"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
    return run_cli(lambda: ingest(args), debug=args.debug)


def ingest(args: argparse.Namespace) -> int:
    # Imported here so that `--help` answers without loading Chroma.
    from ingest.pipeline import ingest_paths

    settings = load_settings(
        args.config,
        {
            "vector_store.collection": args.collection,
            "vector_store.persist_dir": args.persist_dir,
            "vector_store.server_url": args.server_url,
        },
    )
    try:
        report = ingest_paths(args.paths, settings, progress=True)
    except KeyboardInterrupt:
        print("ingest: interrupted; chunks written so far are kept, re-run to finish", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(report.summary())
    every_file_failed = report.files_seen > 0 and report.files_ingested == 0
    return EXIT_ALL_FAILED if every_file_failed else 0

if __name__ == "__main__":
    sys.exit(main())
