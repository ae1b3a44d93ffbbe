"""The local generator backend: the aligned model (base + LoRA adapter) loaded in this process.

`Generator` holds what every engine shares (the chat template, the prompt budget, the statistics);
`SequentialGenerator` runs one generation at a time behind a lock: on a small CPU one generation already uses
every core, and two interleaved ones only slow each other down. On a GPU, agents.continuous_generator batches
every stream into one forward step instead; agents.parts picks the engine from the settings.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from agents.generation import GenerationError, GenerationStats
from agents.messages import ChatMessages, split_system
from configs.settings import ModelSettings

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

# How long the consumer of a stream waits for the next token before giving up on a stalled generation.
STREAM_TOKEN_TIMEOUT_S = 120.0


def configure_cpu_threads(threads: int | None) -> None:
    """Size torch's intra-op pool for CPU serving; None: half the cores.

    Half, because while an answer streams, the guard embeds it sentence by sentence on another thread:
    two pools each as wide as the machine oversubscribe the cores and stall each other.
    """
    import torch

    if torch.cuda.is_available():
        return
    threads = threads or max(1, (os.cpu_count() or 2) // 2)
    torch.set_num_threads(threads)
    logger.info("torch CPU threads: %d", threads)


class Generator(ABC):
    """agents.generation.ChatGenerator on the local model: chat-templated, truncated, greedy-by-default
    generation, whole or token by token."""

    # Generations that may usefully run at once; callers size their worker pools by it.
    concurrency = 1

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, settings: ModelSettings):
        self.model = model
        self.tokenizer = tokenizer
        self.settings = settings
        self.stats = GenerationStats()

    @abstractmethod
    def stream(self, messages: ChatMessages) -> Iterator[str]:
        """Yield text pieces as they are decoded. Closing the iterator ends generation at the next token."""

    def generate(self, messages: ChatMessages) -> str:
        return "".join(self.stream(messages))

    def close(self) -> None:
        """Release what the engine holds beyond the model (threads, caches)."""

    def encode(self, messages: ChatMessages) -> list[int]:
        """Token ids of the chat-templated prompt, at most `max_input_tokens` long.

        The oldest turns after the system prompt go first; if the system prompt and the latest turn
        alone are still too long, the middle of the token sequence is cut, so the system prompt (the
        instructions and the retrieved context's head) and the end of the latest turn survive.
        """
        budget = self.settings.max_input_tokens
        system, turns = split_system(messages)
        while True:
            ids = self._template(system + turns)
            if len(ids) <= budget or len(turns) <= 1:
                break
            turns = turns[1:]
        if len(ids) > budget:
            head_len = min(len(self._template(system)) if system else 0, budget // 2)
            tail_len = budget - head_len
            logger.warning("prompt of %d tokens cut to %d (max_input_tokens)", len(ids), budget)
            ids = ids[:head_len] + ids[-tail_len:]
        return ids

    def _template(self, messages: ChatMessages) -> list[int]:
        return self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, return_dict=False
        )


class SequentialGenerator(Generator):
    """One `model.generate` at a time; callers queue on the lock in arrival order (see agents.nodes)."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, settings: ModelSettings):
        super().__init__(model, tokenizer, settings)
        # Reentrant: a guard that judges with this same model (generator_judge) generates from the thread
        # that is consuming a stream, and must not wait on itself.
        self._lock = threading.RLock()

    def stream(self, messages: ChatMessages) -> Iterator[str]:
        import torch
        from transformers import StoppingCriteriaList, TextIteratorStreamer

        input_ids = torch.tensor([self.encode(messages)], device=self.model.device)
        streamer = TextIteratorStreamer(
            self.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=STREAM_TOKEN_TIMEOUT_S
        )
        stop = threading.Event()
        kwargs = self._generation_kwargs() | {
            "input_ids": input_ids,
            "attention_mask": input_ids.new_ones(input_ids.shape),
            "streamer": streamer,
            "stopping_criteria": StoppingCriteriaList([_EventStop(stop)]),
        }
        failure: list[BaseException] = []

        def run() -> None:
            import torch

            started = time.perf_counter()
            try:
                with torch.inference_mode():
                    output = self.model.generate(**kwargs)
                self.stats.record(output.shape[-1] - input_ids.shape[-1], time.perf_counter() - started)
            except BaseException as exc:  # noqa: BLE001 -- handed to the consumer thread, which re-raises it
                failure.append(exc)
                streamer.end()

        # Held by the consumer, so a request queued behind another waits here, not on the token timeout.
        with self._lock:
            worker = threading.Thread(target=run, name="generator", daemon=True)
            worker.start()
            try:
                for piece in streamer:
                    if piece:
                        yield piece
            except queue.Empty as exc:
                stalled = f"no token for {STREAM_TOKEN_TIMEOUT_S:.0f} s; generation stalled"
                raise GenerationError(stalled) from exc
            finally:
                stop.set()  # a consumer that stops early frees the model at the next token
                worker.join()
        if failure:
            raise GenerationError(f"generation failed: {failure[0]}") from failure[0]

    def _generation_kwargs(self) -> dict[str, Any]:
        s = self.settings
        kwargs: dict[str, Any] = {
            "max_new_tokens": s.max_new_tokens,
            "repetition_penalty": s.repetition_penalty,
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        if s.temperature > 0:
            return kwargs | {"do_sample": True, "temperature": s.temperature, "top_p": s.top_p}
        # Greedy: unset the sampling knobs so transformers doesn't warn they are ignored.
        return kwargs | {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}


class _EventStop:
    """A stopping criterion that ends generation once its event is set."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        import torch

        batch = input_ids.shape[0]
        return torch.full((batch,), self.event.is_set(), dtype=torch.bool, device=input_ids.device)
