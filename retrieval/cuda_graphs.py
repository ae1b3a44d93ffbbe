"""A sentence encoder's transformer replayed from CUDA graphs on the GPU.

MiniLM's forward is about a hundred small kernels. Next to a model server on the same GPU, each launch waits its
turn against the server's work: on an H100 under 32 concurrent chats the guard's and the retriever's forwards took
50-75 ms a step (benchmarks/results/generate_throughput_int8_h100_unshared.json). A CUDA graph launches the
whole forward at once. Graphs have fixed shapes, so a batch is padded to a bucket (rows to a power of two, tokens
to a multiple of `TOKEN_STEP`) and each bucket is captured the first time it is needed. Padded tokens are masked
as the tokenizer's own padding is; a padded row attends to its first token only, and is dropped. A batch larger
than the largest bucket runs eagerly.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Iterable

    import torch

TOKEN_STEP = 64
MAX_ROWS = 32
MAX_TOKENS = 512  # BERT's position table


def bucket(rows: int, tokens: int) -> tuple[int, int] | None:
    """The graph shape a batch of `rows` x `tokens` is padded to, or None when it is larger than any graph."""
    if rows > MAX_ROWS or tokens > MAX_TOKENS:
        return None
    return 1 << (rows - 1).bit_length(), -(-tokens // TOKEN_STEP) * TOKEN_STEP


def padded(batch: dict[str, np.ndarray], shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """`batch` padded to `shape`: pad tokens masked out; each padded row keeps one token visible, so that no
    attention row is empty."""
    rows, tokens = batch["input_ids"].shape
    out = {name: np.zeros(shape, dtype=np.int64) for name in batch}
    for name, values in batch.items():
        out[name][:rows, :tokens] = values
    out["attention_mask"][rows:, 0] = 1
    return out


class _Graph(NamedTuple):
    graph: torch.cuda.CUDAGraph
    inputs: dict[str, torch.Tensor]
    output: torch.Tensor


class GraphedEncoder:
    """`last_hidden_state` of a tokenized batch (numpy in, numpy out) through CUDA graphs; thread-safe."""

    # One capture at a time in the process: two encoders (the guard's, the retriever's) may be first used at once.
    _capturing = threading.Lock()

    def __init__(self, model: torch.nn.Module) -> None:
        import torch

        self.model = model
        self.device = next(model.parameters()).device
        self.graphs: dict[tuple[int, int], _Graph] = {}
        # The graphs share one memory pool: safe because replays are serialized (the lock) and each replay's output
        # is copied out before the next one starts.
        self.pool = torch.cuda.graph_pool_handle()
        self._lock = threading.Lock()

    def __call__(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        import torch

        rows, tokens = batch["input_ids"].shape
        shape = bucket(rows, tokens)
        with self._lock, torch.inference_mode():
            if shape is None:
                inputs = {name: torch.as_tensor(ids, device=self.device) for name, ids in batch.items()}
                return self.model(**inputs).last_hidden_state.float().cpu().numpy()
            graph = self.graphs.get(shape) or self._capture(shape, batch.keys())
            for name, values in padded(batch, shape).items():
                graph.inputs[name].copy_(torch.from_numpy(values))
            graph.graph.replay()
            return graph.output[:rows, :tokens].float().cpu().numpy()

    def _capture(self, shape: tuple[int, int], names: Iterable[str]) -> _Graph:
        import torch

        inputs = {name: torch.zeros(shape, dtype=torch.long, device=self.device) for name in names}
        inputs["attention_mask"].fill_(1)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with self._capturing, torch.cuda.stream(side):
            for _ in range(2):  # warm-up outside the graph: lazy initialisation must not be captured
                self.model(**inputs)
            torch.cuda.current_stream(self.device).synchronize()
            graph = torch.cuda.CUDAGraph()
            # thread_local: the other threads of the service keep using the GPU while this one captures
            with torch.cuda.graph(graph, pool=self.pool, stream=side, capture_error_mode="thread_local"):
                output = self.model(**inputs).last_hidden_state
        torch.cuda.current_stream(self.device).wait_stream(side)
        self.graphs[shape] = _Graph(graph, inputs, output)
        return self.graphs[shape]
