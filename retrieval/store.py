"""The Chroma knowledge base: an embedded PersistentClient, or a Chroma server over HTTP.

Every collection uses cosine distance and records the embedding model it was built with, so a
store built with one embedder is never silently queried with another.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import chromadb
from chromadb.config import Settings as ChromaSettings
from langchain_chroma import Chroma

from configs.errors import AppError
from configs.settings import AppSettings, ConfigError
from retrieval.embeddings import build_embeddings

logger = logging.getLogger(__name__)

EMBEDDING_MODEL_KEY = "embedding_model"
# Chroma rejects larger writes (client.get_max_batch_size() is 5,461 for the embedded store).
MAX_WRITE_BATCH = 5000


class VectorStoreError(AppError, RuntimeError):
    """The Chroma store cannot be opened or used; the message says what to do."""


def open_store(settings: AppSettings) -> Chroma:
    """The knowledge-base collection, created on first use, with our embeddings attached."""
    client = _open_client(settings)
    store_settings = settings.vector_store
    embedder_name = settings.embedding.name_or_path
    store = Chroma(
        client=client,
        collection_name=store_settings.collection,
        # langchain-chroma hands Chroma `embedding_function=None` and embeds with ours, so Chroma
        # never attaches (and downloads) its default ONNX embedder.
        embedding_function=build_embeddings(settings.embedding),
        collection_metadata={EMBEDDING_MODEL_KEY: embedder_name},
        collection_configuration={"hnsw": {"space": "cosine"}},
    )
    _check_collection(store, store_settings.collection, embedder_name)
    return store


def index_path(settings: AppSettings) -> Path:
    """The SQLite file beside the collection: the ingest manifest and the BM25 texts (their tantivy
    index is the folder beside it, `retrieval.lexical.bm25_dir`).

    It lives in `persist_dir` also in server mode (named after the server), so one ingest host
    keeps the manifest for a collection it writes on a server.
    """
    store = settings.vector_store
    if store.server_url:
        url = urlparse(store.server_url)
        return store.persist_dir / f"{store.collection}@{url.hostname}_{url.port or 'default'}.index.sqlite"
    return store.persist_dir / f"{store.collection}.index.sqlite"


def drop_collection(settings: AppSettings) -> bool:
    """Delete the knowledge-base collection; False when there was none."""
    client = _open_client(settings)
    name = settings.vector_store.collection
    if name not in {collection.name for collection in client.list_collections()}:
        return False
    client.delete_collection(name)
    return True


def _chroma_settings() -> ChromaSettings:
    return ChromaSettings(anonymized_telemetry=False)


def _open_client(settings: AppSettings) -> chromadb.ClientAPI:
    server_url = settings.vector_store.server_url
    if server_url:
        return _http_client(server_url)
    persist_dir = settings.vector_store.persist_dir
    try:
        persist_dir.mkdir(parents=True, exist_ok=True)
        client = chromadb.PersistentClient(path=str(persist_dir), settings=_chroma_settings())
    except Exception as exc:  # chromadb raises many types for an unusable directory
        raise VectorStoreError(
            f"cannot open the Chroma store at {persist_dir}: {exc}; "
            "choose another vector_store.persist_dir or fix its permissions"
        ) from exc
    logger.info("opened embedded Chroma store at %s", persist_dir)
    return client


def _http_client(server_url: str) -> chromadb.ClientAPI:
    url = urlparse(server_url)
    if url.scheme not in {"http", "https"} or not url.hostname:
        raise ConfigError(
            f"vector_store.server_url must look like http://host:port, not {server_url!r}"
        )
    port = url.port or (443 if url.scheme == "https" else 8000)
    try:
        client = chromadb.HttpClient(
            host=url.hostname, port=port, ssl=url.scheme == "https", settings=_chroma_settings()
        )
        client.heartbeat()
    except Exception as exc:  # connection refused, DNS, TLS, HTTP errors all mean "not usable"
        raise VectorStoreError(
            f"cannot reach the Chroma server at {server_url} ({exc}); start it with "
            f"`chroma run --path <dir> --host {url.hostname} --port {port}`, "
            "or unset vector_store.server_url to use the embedded store"
        ) from exc
    logger.info("connected to Chroma server at %s", server_url)
    return client


def _check_collection(store: Chroma, name: str, embedder_name: str) -> None:
    """An existing collection may predate our settings: refuse one that would give wrong scores."""
    collection = store._collection  # langchain-chroma exposes no public handle to the collection
    space = (collection.configuration.get("hnsw") or {}).get("space")
    if space != "cosine":
        raise VectorStoreError(
            f"collection {name!r} uses {space!r} distance, not cosine; "
            "re-ingest into a new collection (vector_store.collection)"
        )
    built_with = (collection.metadata or {}).get(EMBEDDING_MODEL_KEY)
    if built_with is not None and built_with != embedder_name:
        raise VectorStoreError(
            f"collection {name!r} was built with embedding model {built_with!r}, "
            f"but embedding.name_or_path is {embedder_name!r}; use that model or another collection"
        )


def ids_of_source(store: Chroma, source: str) -> set[str]:
    """IDs of every chunk ingested from one source."""
    return set(store.get(where={"source": source}, include=[])["ids"])


def existing_ids(store: Chroma, ids: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(ids), MAX_WRITE_BATCH):
        found.update(store.get(ids=list(ids[start : start + MAX_WRITE_BATCH]), include=[])["ids"])
    return found


def write_embedded(
    store: Chroma,
    ids: Sequence[str],
    texts: Sequence[str],
    embeddings: Sequence[Sequence[float]],
    metadatas: Sequence[dict[str, Any]],
) -> None:
    """Upsert chunks whose embeddings are already computed, in batches Chroma accepts."""
    collection = store._collection  # add_texts would embed again; the raw collection takes vectors
    for start in range(0, len(ids), MAX_WRITE_BATCH):
        end = start + MAX_WRITE_BATCH
        collection.upsert(
            ids=list(ids[start:end]),
            documents=list(texts[start:end]),
            embeddings=[list(vector) for vector in embeddings[start:end]],
            metadatas=list(metadatas[start:end]),
        )


def update_metadata(store: Chroma, ids: Sequence[str], metadatas: Sequence[dict[str, Any]]) -> None:
    """Rewrite the metadata of chunks already stored (no re-embedding)."""
    for start in range(0, len(ids), MAX_WRITE_BATCH):
        end = start + MAX_WRITE_BATCH
        store._collection.update(ids=list(ids[start:end]), metadatas=list(metadatas[start:end]))


def delete_ids(store: Chroma, ids: Sequence[str]) -> None:
    for start in range(0, len(ids), MAX_WRITE_BATCH):
        store.delete(ids=list(ids[start : start + MAX_WRITE_BATCH]))
