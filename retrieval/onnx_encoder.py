"""A sentence encoder's transformer run by ONNX Runtime on the CPU, exported once from the loaded torch model.

Same float32 arithmetic as the torch forward (MiniLM: largest difference in a hidden state about 2e-6 here).
Which batches come here is retrieval.hidden_states' choice. The export (about 3 s) is cached on disk, keyed by
the weights, so a restart and every process after the first load it in well under a second; a damaged cache file
is exported again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import onnxruntime
    import torch

logger = logging.getLogger(__name__)

INPUTS = ("input_ids", "attention_mask", "token_type_ids")


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
