"""MiniLM sentence embeddings for the guard: one float32 forward per call, and the recent texts cached.

Profiled on one core of this project's 2-core AMD EPYC (torch.set_num_threads(1)), one short request:
tokenizing 0.07 ms, the numpy heads well under 0.1 ms, the MiniLM forward nearly all the rest (the Linear
layers' matrix products). The weights were bfloat16 until issue 20: with torch 2.13 on this CPU (AVX2, no
AVX-512 BF16) a bfloat16 forward took 164 ms per text against 40 ms in float32 (batch 1, same moment,
load ~5 on two cores; batched, 110-130 ms against 11-20 ms), and float32 embeddings are the reference
the bfloat16 ones approximated (cosine 0.99998). Dynamic int8 quantization was faster still but moved
embeddings to cosine 0.94-0.99 and made each text's embedding depend on the others in its batch.
The heads are trained on embeddings from this same encoder (`EMBEDDING_DTYPE` is in the manifest).
Since issue 20 the encoder is MiniLM fine-tuned for the guard (lab.guard.tune_encoder): a LoRA adapter shipped
beside the heads, merged into a private float32 copy at load, so a verdict costs what a plain MiniLM forward does.
On the CPU that forward runs in ONNX Runtime (retrieval.hidden_states): the same float32 embeddings, so the same
thresholds, at less than half the CPU; on a CUDA GPU it is replayed from CUDA graphs (retrieval.cuda_graphs).
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from configs.settings import DEFAULT_CACHE_DIR, EncoderRuntime
from retrieval.hidden_states import HiddenStates

EMBEDDING_DTYPE = "float32"
MAX_TOKENS = 256  # all-MiniLM-L6-v2 was trained on at most 256 word pieces; answer windows stay below


class SentenceEncoder:
    """Normalized float32 mean-pooled embeddings (what sentence-transformers gives for this model)."""

    def __init__(self, tokenizer, hidden_states: HiddenStates, cache_size: int = 256) -> None:
        self.tokenizer = tokenizer
        self.hidden_states = hidden_states
        self.cache_size = cache_size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def load(
        cls, embedder: str, device: str = "cpu", cache_size: int = 256, adapter: Path | None = None,
        runtime: EncoderRuntime = "auto",
    ) -> SentenceEncoder:
        """`embedder`'s transformer, with the PEFT `adapter` folder merged into it when one is given."""
        import torch

        from retrieval.embeddings import load_sentence_model

        shared = load_sentence_model(embedder, device)  # the retriever's copy stays as it is
        model = copy.deepcopy(shared[0].auto_model).to(getattr(torch, EMBEDDING_DTYPE))
        if adapter is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
        hidden_states = HiddenStates.load(model.eval(), runtime, DEFAULT_CACHE_DIR / "onnx")
        return cls(shared.tokenizer, hidden_states, cache_size)

    def __call__(self, texts: list[str]) -> np.ndarray:
        """Embeddings of `texts`, in order; the ones not cached are encoded together in one forward."""
        with self._lock:
            known = {text: self._cache[text] for text in texts if text in self._cache}
        missing = list(dict.fromkeys(text for text in texts if text not in known))
        if missing:
            known.update(zip(missing, self.forward(missing), strict=True))
            self._remember(missing, known)
        return np.stack([known[text] for text in texts])

    def forward(self, texts: list[str]) -> np.ndarray:
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="np")
        return self.hidden_states.sentence_embeddings(batch)

    def _remember(self, texts: list[str], vectors: dict[str, np.ndarray]) -> None:
        # The answer check re-reads the request the request check just embedded: keep the latest texts.
        if self.cache_size <= 0:
            return
        with self._lock:
            for text in texts:
                self._cache[text] = vectors[text]
                self._cache.move_to_end(text)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
