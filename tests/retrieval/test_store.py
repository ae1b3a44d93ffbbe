"""open_store and the write helpers on a real embedded Chroma."""

from __future__ import annotations

import chromadb
import pytest
from chromadb.config import Settings as ChromaSettings

from configs.settings import AppSettings, ConfigError
from retrieval.store import (
    EMBEDDING_MODEL_KEY,
    VectorStoreError,
    delete_ids,
    existing_ids,
    ids_of_source,
    open_store,
    write_embedded,
)

pytestmark = pytest.mark.slow


def _with_store(settings: AppSettings, **changes: object) -> AppSettings:
    return settings.model_copy(update={"vector_store": settings.vector_store.model_copy(update=changes)})


def test_collection_is_cosine_and_records_its_embedder(store_settings: AppSettings) -> None:
    store = open_store(store_settings)
    collection = store._collection
    assert collection.name == "test_kb"
    assert collection.configuration["hnsw"]["space"] == "cosine"
    assert collection.metadata[EMBEDDING_MODEL_KEY] == store_settings.embedding.name_or_path
    assert store.embeddings is not None
    assert collection.configuration.get("embedding_function") is None  # Chroma's ONNX default never attached


def test_writes_are_batched_past_chromas_limit(store_settings: AppSettings) -> None:
    store = open_store(store_settings)
    count = 6000  # above the 5,461 items Chroma accepts per call
    ids = [f"chunk-{n}" for n in range(count)]
    vector = [1.0] + [0.0] * 383
    write_embedded(
        store, ids, [f"text {n}" for n in range(count)], [vector] * count,
        [{"source": "big.txt" if n % 2 else "other.txt"} for n in range(count)],
    )
    assert store._collection.count() == count
    assert existing_ids(store, ids[:10] + ["absent"]) == set(ids[:10])
    assert len(ids_of_source(store, "big.txt")) == count // 2
    delete_ids(store, ids)
    assert store._collection.count() == 0


def test_refuses_a_collection_built_with_another_embedder(store_settings: AppSettings) -> None:
    client = chromadb.PersistentClient(
        path=str(store_settings.vector_store.persist_dir), settings=ChromaSettings(anonymized_telemetry=False)
    )
    client.create_collection(
        "foreign_kb", embedding_function=None, metadata={EMBEDDING_MODEL_KEY: "some-other-model"},
        configuration={"hnsw": {"space": "cosine"}},
    )
    client.create_collection("l2_kb", embedding_function=None, configuration={"hnsw": {"space": "l2"}})

    with pytest.raises(VectorStoreError, match="some-other-model"):
        open_store(_with_store(store_settings, collection="foreign_kb"))
    with pytest.raises(VectorStoreError, match="not cosine"):
        open_store(_with_store(store_settings, collection="l2_kb"))


def test_unreachable_server_says_how_to_start_one(store_settings: AppSettings) -> None:
    with pytest.raises(VectorStoreError, match="chroma run"):
        open_store(_with_store(store_settings, server_url="http://127.0.0.1:9"))


def test_malformed_server_url_is_a_config_error(store_settings: AppSettings) -> None:
    with pytest.raises(ConfigError, match="http://host:port"):
        open_store(_with_store(store_settings, server_url="localhost:8000"))
