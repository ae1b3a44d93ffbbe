"""The embedded default backend: MiniLM sentence embeddings + small heads trained in this repository.

Request stage: the latest user turn (and, in a multi-turn chat, that turn joined to the one before; the
higher score wins). Response stage: the answer judged with the request in view: the features are the
request and answer embeddings, their element-wise product, and the request head's scores for both, so
"Sure, step 1..." after a harmful request scores differently from the same words after a harmless one.
Long answers are judged window by window; the worst window decides. Each check embeds all its texts
in one forward, and the answer check reuses the request's embedding from the request check (encoder.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from agents.messages import ChatMessages
from agents.safety.conversation import last_user_turn, request_views, word_windows
from agents.safety.encoder import EMBEDDING_DTYPE, SentenceEncoder
from agents.safety.heads import ClassifierFilesError, GuardHeads, StageHeads, load_heads
from agents.safety.verdict import Judge, Verdict
from configs.settings import AppSettings, EncoderRuntime

logger = logging.getLogger(__name__)

Encoder = Callable[[list[str]], np.ndarray]


def request_features(request_embeddings: np.ndarray) -> np.ndarray:
    return request_embeddings


# Request-head scores enter the response features as logits, clipped to the range that out-of-fold
# training scores reach and scaled down to the size of embedding coordinates (the L2 penalty sees both).
SCORE_CLIP = 1e-4
SCORE_SCALE = 0.25


def score_feature(probabilities: np.ndarray) -> np.ndarray:
    clipped = np.clip(probabilities, SCORE_CLIP, 1.0 - SCORE_CLIP)
    return (SCORE_SCALE * np.log(clipped / (1.0 - clipped)))[:, None].astype(np.float32)


def response_features(
    request_embeddings: np.ndarray,
    answer_embeddings: np.ndarray,
    request_scores: np.ndarray,
    answer_scores: np.ndarray,
) -> np.ndarray:
    """Both embeddings, their product, and what the request head thinks of the request and of the answer.

    The request head (trained on four times more data) already knows what harmful text looks like; the
    response head learns when that matters: a harmful request answered with anything but a refusal, or
    an answer that is itself hateful or sexual whatever the question was.
    """
    return np.concatenate(
        [
            request_embeddings,
            answer_embeddings,
            request_embeddings * answer_embeddings,
            score_feature(request_scores),
            score_feature(answer_scores),
        ],
        axis=1,
    )


class EmbeddingClassifierGuard:
    """`SafetyGuard` over the trained heads; thresholds come from training unless the settings override them."""

    name = "classifier"

    def __init__(
        self,
        heads: GuardHeads,
        encode: Encoder,
        *,
        request_threshold: float | None = None,
        response_threshold: float | None = None,
        category_min_probability: float = 0.35,
    ) -> None:
        self.heads = heads
        self.encode = encode
        self.request_threshold = heads.request.threshold if request_threshold is None else request_threshold
        self.response_threshold = heads.response.threshold if response_threshold is None else response_threshold
        self.category_min_probability = category_min_probability

    @classmethod
    def from_settings(cls, settings: AppSettings, judge: Judge | None = None) -> EmbeddingClassifierGuard:
        """The heads at `safety.classifier_path` on the embedder's device, with the configured thresholds."""
        safety = settings.safety
        return cls.load(
            safety.classifier_path,
            device=settings.embedding.device,
            runtime=settings.embedding.runtime,
            request_threshold=safety.request_threshold,
            response_threshold=safety.response_threshold,
            category_min_probability=safety.category_min_probability,
        )

    @classmethod
    def load(
        cls,
        classifier_path: Path,
        *,
        device: str = "cpu",
        runtime: EncoderRuntime = "auto",
        request_threshold: float | None = None,
        response_threshold: float | None = None,
        category_min_probability: float = 0.35,
    ) -> EmbeddingClassifierGuard:
        heads = load_heads(classifier_path)
        trained_on = heads.manifest.get("embedding_dtype", "float32")
        if trained_on != EMBEDDING_DTYPE:
            raise ClassifierFilesError(
                f"{classifier_path}: heads were trained on {trained_on} embeddings, the guard encodes in "
                f"{EMBEDDING_DTYPE}; retrain with `python -m lab.guard.train`"
            )
        return cls(
            heads,
            SentenceEncoder.load(heads.embedder, device, adapter=heads.encoder_adapter, runtime=runtime),
            request_threshold=request_threshold,
            response_threshold=response_threshold,
            category_min_probability=category_min_probability,
        )

    def check_request(self, messages: ChatMessages) -> Verdict:
        started = time.perf_counter()
        features = request_features(self.encode(request_views(messages)))
        return self._verdict("request", self.heads.request, self.request_threshold, features, started)

    def check_response(self, messages: ChatMessages, answer: str) -> Verdict:
        started = time.perf_counter()
        windows = word_windows(answer)
        embeddings = self.encode([last_user_turn(messages), *windows])
        scores = self.heads.request.unsafe.unsafe_probability(request_features(embeddings))
        count = len(windows)
        features = response_features(
            np.repeat(embeddings[:1], count, axis=0), embeddings[1:], np.repeat(scores[:1], count), scores[1:]
        )
        return self._verdict("response", self.heads.response, self.response_threshold, features, started)

    def _verdict(
        self, stage: str, heads: StageHeads, threshold: float, features: np.ndarray, started: float
    ) -> Verdict:
        scores = heads.unsafe.unsafe_probability(features)
        worst = int(np.argmax(scores))
        score = float(scores[worst])
        unsafe = score >= threshold
        categories = self._categories(heads, features[worst : worst + 1]) if unsafe else []
        return Verdict(
            safe=not unsafe,
            categories=categories,
            score=min(max(score, 0.0), 1.0),
            backend=self.name,
            stage=stage,
            latency_ms=(time.perf_counter() - started) * 1000.0,
        )

    def _categories(self, heads: StageHeads, features: np.ndarray) -> list[str]:
        probabilities = heads.category.class_probabilities(features)[0]
        ranked = np.argsort(-probabilities)
        chosen = [self.heads.categories[ranked[0]]]
        chosen += [
            self.heads.categories[i] for i in ranked[1:] if probabilities[i] >= self.category_min_probability
        ]
        return chosen
