"""A sentence encoder's hidden states, run where that is fastest for the device and the batch.

On the CPU, ONNX Runtime (retrieval.onnx_encoder) needs about half the CPU for small batches (one thread, one
16-token request: 9 ms against 20 ms), since torch dispatches dozens of small kernels per layer; for larger ones
torch's matrix products win (32 texts of 256 tokens: 129 ms against 89 ms per text). `python -m
benchmarks.guard_runtime` measures both by length and batch size. So `HiddenStates` sends a batch of at most
`ONNX_MAX_BATCH_TOKENS` padded tokens to ONNX Runtime and larger ones to torch. On a CUDA GPU it replays CUDA
graphs instead (retrieval.cuda_graphs).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from configs.settings import EncoderRuntime
from retrieval.onnx_encoder import OnnxEncoder

if TYPE_CHECKING:
    import torch

    from retrieval.cuda_graphs import GraphedEncoder

# Padded tokens in a batch up to which ONNX Runtime is faster on this CPU (benchmarks/results/guard_runtime.json:
# it wins at 1x16 to 1x128 and 4x32 tokens, ties at 4x64 and 32x16, loses from 1x256 and 32x32 on).
ONNX_MAX_BATCH_TOKENS = 128


def chosen_runtime(runtime: EncoderRuntime, device: str) -> EncoderRuntime:
    """`auto`: ONNX Runtime on the CPU, CUDA graphs on a CUDA GPU (no CUDA build of ONNX Runtime here), torch on
    anything else; a runtime named for another device is refused."""
    if runtime == "auto":
        return {"cpu": "onnx", "cuda": "cuda_graphs"}.get(device, "torch")
    if runtime == "onnx" and device != "cpu":
        raise ValueError(f"the onnx runtime serves the CPU only; the encoder is on {device}")
    if runtime == "cuda_graphs" and device != "cuda":
        raise ValueError(f"the cuda_graphs runtime serves CUDA GPUs only; the encoder is on {device}")
    return runtime


class HiddenStates:
    """`last_hidden_state` of a tokenized batch (numpy in, numpy out): through CUDA graphs when they are on;
    else small batches through ONNX Runtime when it is on, the rest through the torch model."""

    def __init__(self, model: torch.nn.Module, onnx: OnnxEncoder | None = None,
                 graphed: GraphedEncoder | None = None) -> None:
        self.model = model
        self.onnx = onnx
        self.graphed = graphed
        self.device = next(model.parameters()).device  # read once: this runs on every verdict and query

    @classmethod
    def load(cls, model: torch.nn.Module, runtime: EncoderRuntime, cache_dir: Path) -> HiddenStates:
        import torch

        chosen = chosen_runtime(runtime, next(model.parameters()).device.type)
        if chosen == "cuda_graphs":
            from retrieval.cuda_graphs import GraphedEncoder

            return cls(model, graphed=GraphedEncoder(model))
        if chosen == "onnx":
            return cls(model, onnx=OnnxEncoder.from_model(model, cache_dir, torch.get_num_threads()))
        return cls(model)

    def __call__(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        if self.graphed is not None:
            return self.graphed(batch)
        if self.onnx is not None and batch["input_ids"].size <= ONNX_MAX_BATCH_TOKENS:
            return self.onnx(batch)
        import torch

        with torch.inference_mode():
            inputs = {name: torch.as_tensor(ids, device=self.device) for name, ids in batch.items()}
            return self.model(**inputs).last_hidden_state.float().cpu().numpy()

    def sentence_embeddings(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        """Normalized mean-pooled embeddings of a tokenized batch (what sentence-transformers gives MiniLM)."""
        return mean_pooled(self(batch), batch["attention_mask"])


def mean_pooled(hidden: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """Normalized mean of the token states under the mask (sentence-transformers' mean pooling + Normalize)."""
    mask = attention_mask[..., None].astype(np.float32)
    pooled = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
    return pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
