"""Document ingestion: load files, chunk them, and write them to the Chroma knowledge base.

Entry points: `ingest.pipeline.ingest_paths`, `ingest.starter.ensure_starter_kb`, `python -m ingest`.
"""
