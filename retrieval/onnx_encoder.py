"""A sentence encoder's transformer run by ONNX Runtime on the CPU for short texts, exported once from the
loaded torch model.

Same float32 arithmetic as the torch forward (MiniLM: largest difference in a hidden state about 2e-6 here).
For small batches ONNX Runtime needs about half the CPU (one thread, one 16-token request: 9 ms against 20 ms),
since torch dispatches dozens of small kernels per layer; for larger ones torch's matrix products win (32 texts
of 256 tokens: 129 ms against 89 ms per text). `python -m benchmarks.guard_runtime` measures both by length and
batch size. So `HiddenStates` sends a batch of at most `ONNX_MAX_BATCH_TOKENS` padded tokens to ONNX Runtime
and larger ones to torch. On a CUDA GPU it replays CUDA graphs instead (retrieval.cuda_graphs).
The export (about 3 s) is cached on disk, keyed by the weights, so a restart and every process after the first
load it in well under a second; a damaged cache file is exported again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    import onnxruntime
    import torch

    from retrieval.cuda_graphs import GraphedEncoder

logger = logging.getLogger(__name__)

INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# Padded tokens in a batch up to which ONNX Runtime is faster on this CPU (benchmarks/results/guard_runtime.json:
# it wins at 1x16 to 1x128 and 4x32 tokens, ties at 4x64 and 32x16, loses from 1x256 and 32x32 on).
ONNX_MAX_BATCH_TOKENS = 128
Runtime = Literal["auto", "onnx", "torch", "cuda_graphs"]


def chosen_runtime(runtime: Runtime, device: str) -> Runtime:
    """`auto`: ONNX Runtime on the CPU, CUDA graphs on a CUDA GPU (no CUDA build of ONNX Runtime here), torch on
    anything else; a runtime named for another device is refused."""
    if runtime == "auto":
        return {"cpu": "onnx", "cuda": "cuda_graphs"}.get(device, "torch")
    if runtime == "onnx" and device != "cpu":
        raise ValueError(f"the onnx runtime serves the CPU only; the encoder is on {device}")
    if runtime == "cuda_graphs" and device != "cuda":
        raise ValueError(f"the cuda_graphs runtime serves CUDA GPUs only; the encoder is on {device}")
    return runtime


class OnnxEncoder:
    """`last_hidden_state` of a BERT-style encoder for a tokenized batch (numpy in, numpy out); thread-safe."""

    def __init__(self, session: onnxruntime.InferenceSession) -> None:
        self.session = session
        self.inputs = [item.name for item in session.get_inputs()]

    @classmethod
    def from_model(cls, model: torch.nn.Module, cache_dir: Path, threads: int) -> OnnxEncoder:
        """The cached export of `model`'s current weights, exported first when missing or unreadable."""
        from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidGraph, InvalidProtobuf

        path = cache_dir / f"{weights_key(model)}.onnx"
        if path.is_file():
            try:
                return cls(_session(path, threads))
            except (Fail, InvalidGraph, InvalidProtobuf) as exc:  # damaged on disk: export it again
                logger.warning("re-exporting the unreadable ONNX encoder %s: %s", path, exc)
        _export(model, path)
        return cls(_session(path, threads))

    def __call__(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        feeds = {name: np.asarray(batch[name], dtype=np.int64) for name in self.inputs}
        return self.session.run(None, feeds)[0]


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
    def load(cls, model: torch.nn.Module, runtime: Runtime, cache_dir: Path) -> HiddenStates:
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


def weights_key(model: torch.nn.Module) -> str:
    """A digest of the weights and the exporter's version: a new adapter or torch gets its own export."""
    import torch

    digest = hashlib.sha256(f"{type(model).__name__} torch {torch.__version__}".encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:24]


def _export(model: torch.nn.Module, path: Path) -> None:
    import torch

    class LastHiddenState(torch.nn.Module):
        """Positional inputs for the exporter; transformers' forward takes them by keyword."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.model(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    example = torch.ones((2, 8), dtype=torch.long)
    dynamic = {name: {0: "batch", 1: "tokens"} for name in (*INPUTS, "last_hidden_state")}
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=path.parent, suffix=".partial")
    os.close(handle)
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice, once per export
            torch.onnx.export(LastHiddenState().eval(), (example, example, torch.zeros_like(example)), partial,
                              input_names=list(INPUTS), output_names=["last_hidden_state"],
                              dynamic_axes=dynamic, opset_version=17, dynamo=False)
        os.replace(partial, path)  # whole or not at all: a process killed mid-export leaves no half file
    finally:
        Path(partial).unlink(missing_ok=True)
    logger.info("exported the encoder to ONNX: %s", path)


def _session(path: Path, threads: int) -> onnxruntime.InferenceSession:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
