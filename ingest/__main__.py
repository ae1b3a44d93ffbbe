"""`python -m ingest PATH...`: keep the knowledge base in sync with files and folders."""

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
EXIT_SOME_SKIPPED = 4  # done, but some files were skipped (the summary lists them with the reason)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ingest",
        description="Load, chunk and embed documents into the Chroma knowledge base, keeping it in sync: "
        "unchanged files are skipped, a changed file replaces its chunks, and an interrupted run is "
        "finished cleanly by the next one. A file's source is its path under the folder named, led by "
        "that folder's name (docs/guide/setup.md), so moving the whole folder adds nothing.",
        epilog=f"Supported types: {', '.join(sorted(LOADERS))}. Folders are searched recursively. "
        "Exit status: 0 done, 2 usage, settings or store error, 3 every file failed, "
        "4 done but some files were skipped, 1 unexpected error.",
    )
    parser.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="files or folders to ingest")
    parser.add_argument(
        "--prune", action="store_true", help="also remove the chunks of files gone from the folders named"
    )
    parser.add_argument(
        "--delete", action="append", default=[], metavar="SOURCE",
        help="remove one source (as cited, e.g. docs/guide.md; end with / for a folder); repeatable",
    )
    parser.add_argument("--reset", action="store_true", help="delete the whole collection and its manifest first")
    add_common_arguments(parser)
    parser.add_argument("--collection", metavar="NAME", help="Chroma collection (vector_store.collection)")
    parser.add_argument("--persist-dir", type=Path, metavar="DIR", help="embedded store directory (vector_store.persist_dir)")
    parser.add_argument("--server-url", metavar="URL", help="Chroma server, http://host:port (vector_store.server_url)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not (args.paths or args.delete or args.reset):
        parser.error("name a PATH to ingest, or use --delete SOURCE or --reset")
    if args.prune and not args.paths:
        parser.error("--prune needs the folders to prune against: name them as PATHs")
    configure_logging(args.debug)
    if not args.debug:
        # pypdf warns about every damaged PDF (the summary reports them); bitsandbytes, imported by
        # sentence-transformers via peft, warns about a 4-bit CPU kernel that embedding never uses.
        for noisy in ("pypdf", "bitsandbytes"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
    return run_cli(lambda: ingest(args), debug=args.debug)


def ingest(args: argparse.Namespace) -> int:
    # Imported here so that `--help` answers without loading Chroma.
    from ingest.pipeline import delete_sources, ingest_paths, reset_store

    settings = load_settings(
        args.config,
        {
            "vector_store.collection": args.collection,
            "vector_store.persist_dir": args.persist_dir,
            "vector_store.server_url": args.server_url,
        },
    )
    if args.reset:
        dropped = reset_store(settings)
        print(f"reset: collection {settings.vector_store.collection!r} {'deleted' if dropped else 'was empty'}")
    if args.delete:
        removed = delete_sources(args.delete, settings)
        print(f"deleted {removed.files_removed} sources, {removed.chunks_removed} chunks")
    if not args.paths:
        return 0
    try:
        report = ingest_paths(args.paths, settings, prune=args.prune, progress=True)
    except KeyboardInterrupt:
        print("ingest: interrupted; committed files are kept, re-run to finish", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(report.summary())
    if report.files_seen > 0 and len(report.skipped) == report.files_seen:
        return EXIT_ALL_FAILED
    return EXIT_SOME_SKIPPED if report.skipped else 0


if __name__ == "__main__":
    sys.exit(main())
