"""Continuous batching on the GPU: every concurrent stream shares one forward step.

Built on transformers' `ContinuousBatchingManager` (paged KV cache, CUDA graphs, FIFO scheduling): each
`stream` adds a request and reads its tokens back; closing the stream cancels the request, which frees its
slot and cache blocks at the next step. One router thread hands the manager's outputs to the waiting streams,
so a stream never polls the shared queue.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from agents.generation import GenerationError
from agents.generator import STREAM_TOKEN_TIMEOUT_S, Generator
from agents.messages import ChatMessages
from configs.settings import ModelSettings

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase
    from transformers.generation.continuous_batching import ContinuousBatchingManager, GenerationOutput

logger = logging.getLogger(__name__)

# Tokens in one forward step off the GPU: a prefill longer than this is split over steps.
CPU_BATCH_TOKENS = 512
# How long the router waits on the manager's queue before checking whether it should stop.
_ROUTER_POLL_S = 0.05


class ContinuousGenerator(Generator):
    """Streams through one continuous-batching manager; thread-safe, no lock."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, settings: ModelSettings):
        super().__init__(model, tokenizer, settings)
        self.concurrency = settings.engine.max_concurrent
        self._manager = _start_manager(model, tokenizer, settings)
        self._waiting: dict[str, queue.Queue[GenerationOutput]] = {}
        self._waiting_lock = threading.Lock()
        self._next_id = 0
        self._closed = threading.Event()
        self._router = threading.Thread(target=self._route_outputs, name="generation-router", daemon=True)
        self._router.start()

    def stream(self, messages: ChatMessages) -> Iterator[str]:
        if self._closed.is_set():
            raise GenerationError("the generator is shut down")
        prompt = self.encode(messages)
        outputs: queue.Queue[GenerationOutput] = queue.Queue()
        with self._waiting_lock:
            request_id = f"turn-{self._next_id}"
            self._next_id += 1
            self._waiting[request_id] = outputs  # before adding: the first token can come back at once
        started = time.perf_counter()
        tokens: list[int] = []
        finished = False
        try:
            added = self._manager.add_request(
                prompt, request_id=request_id, max_new_tokens=self.settings.max_new_tokens, streaming=True
            )
            if added is None:
                raise GenerationError("the generation engine is not accepting requests (stopping or failed)")
            shown = ""
            while not finished:
                output = _latest_output(outputs, request_id)
                if output.error:
                    raise GenerationError(f"generation failed: {output.error}")
                tokens = output.generated_tokens
                finished = output.is_finished()
                text = self.tokenizer.decode(tokens, skip_special_tokens=True)
                # A multi-byte character split across tokens decodes to U+FFFD until its last token arrives.
                if len(text) > len(shown) and (finished or not text.endswith("\ufffd")):
                    yield text[len(shown) :]
                    shown = text
        finally:
            if not finished:  # the consumer left early (closed the stream) or an error ended it
                self._manager.cancel_request(request_id)
            with self._waiting_lock:
                self._waiting.pop(request_id, None)
            self.stats.record(len(tokens), time.perf_counter() - started)

    def busy(self) -> bool:
        """Whether any request is generating or waiting for a slot."""
        processor = self._manager.batch_processor
        return processor is not None and processor.has_pending_requests()

    def close(self) -> None:
        """Stop the engine's threads; streams still open get an error."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._manager.stop(block=True, timeout=10.0, hard_stop=True)
        self._router.join(timeout=5.0)

    def _route_outputs(self) -> None:
        while not self._closed.is_set():
            output = self._manager.get_result(timeout=_ROUTER_POLL_S)
            if output is None:
                if not self._manager.is_running():
                    time.sleep(_ROUTER_POLL_S)  # get_result returns at once when the loop has stopped
                continue
            with self._waiting_lock:
                waiting = self._waiting.get(output.request_id)
            if waiting is not None:  # None: a cancelled stream that already left
                waiting.put(output)


def _latest_output(outputs: queue.Queue[GenerationOutput], request_id: str) -> GenerationOutput:
    """The newest of the outputs waiting (each holds every token so far): a stream that fell behind the engine
    decodes once per wake-up, not once per token, and leaves the GIL to the engine's loop."""
    try:
        output = outputs.get(timeout=STREAM_TOKEN_TIMEOUT_S)
    except queue.Empty as exc:
        raise GenerationError(
            f"no token for {STREAM_TOKEN_TIMEOUT_S:.0f} s for {request_id}; generation stalled"
        ) from exc
    while not (output.error or output.is_finished()):
        try:
            output = outputs.get_nowait()
        except queue.Empty:
            break
    return output


def engine_attention(requested: str, device: torch.device) -> str | None:
    """The attention implementation to give the engine; None leaves the model's, which transformers then
    switches to FlashAttention 3 or 2 where installed (its switch does not know FlashAttention 4 yet)."""
    if requested != "auto":
        return requested
    if device.type != "cuda":
        return None
    import torch
    from transformers.utils import is_flash_attn_4_available

    # FlashAttention 4 has kernels for Hopper (compute capability 9) and newer only.
    if torch.cuda.get_device_capability(device)[0] >= 9 and is_flash_attn_4_available():
        return "flash_attention_4"
    return None


def _start_manager(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, settings: ModelSettings
) -> ContinuousBatchingManager:
    """The manager, warmed up (CUDA graphs captured) and running."""
    from transformers import GenerationConfig
    from transformers.generation.configuration_utils import ContinuousBatchingConfig

    engine = settings.engine
    sampling = (
        {"do_sample": True, "temperature": settings.temperature, "top_p": settings.top_p}
        if settings.temperature > 0
        else {"do_sample": False}
    )
    generation_config = GenerationConfig(
        max_new_tokens=settings.max_new_tokens,
        eos_token_id=model.generation_config.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **sampling,
    )
    batching = ContinuousBatchingConfig(
        max_memory_percent=engine.kv_cache_memory_percent,
        max_batch_tokens=engine.max_batch_tokens,
        max_requests_per_batch=engine.max_concurrent,
        use_cuda_graph=engine.cuda_graphs,
        q_padding_interval_size=engine.query_padding_tokens,
        kv_padding_interval_size=engine.key_padding_tokens,
        auto_switch_to_flash=engine.attention == "auto",
    )
    if model.device.type != "cuda":
        # transformers sizes the cache from the free memory, which off the GPU is the machine's RAM (it took
        # 22 GB here): size it by the work instead, every stream at its longest prompt and answer.
        longest = settings.max_input_tokens + settings.max_new_tokens
        batching.num_blocks = math.ceil(engine.max_concurrent * longest / batching.page_size)
        batching.max_batch_tokens = engine.max_batch_tokens or CPU_BATCH_TOKENS
    if settings.repetition_penalty != 1.0:
        logger.warning("repetition_penalty %.2f is ignored by continuous batching", settings.repetition_penalty)
    # A PEFT wrapper (unmerged adapter on a 4-bit base) forwards to its base; the manager wants the model class.
    target = model.get_base_model() if hasattr(model, "get_base_model") else model
    attention = engine_attention(engine.attention, model.device)
    if attention is not None:
        target.set_attn_implementation(attention)
    started = time.perf_counter()
    manager = target.init_continuous_batching(
        generation_config=generation_config, continuous_batching_config=batching
    )
    manager.warmup()
    manager.start()
    logger.info("continuous batching ready in %.1f s (up to %d streams)", time.perf_counter() - started,
                engine.max_concurrent)
    return manager
