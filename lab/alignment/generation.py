"""Batched greedy generation with left padding, for evaluation and for building training data.

Prompts are sorted by length so that each batch holds similar lengths (little padding, and the longest batch
comes first, so an out-of-memory error shows up at once); answers come back in the caller's order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from tqdm.auto import tqdm

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

Message = dict[str, str]


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 96
    batch_size: int = 64
    repetition_penalty: float = 1.0
    max_input_tokens: int = 1536

    def to_dict(self) -> dict:
        return {"decoding": "greedy", **self.__dict__}


@dataclass(frozen=True)
class Answer:
    text: str
    n_tokens: int
    finished: bool  # ended with the end-of-turn token rather than at max_new_tokens


def _render(tokenizer: PreTrainedTokenizerBase, conversations: list[list[Message]]) -> list[str]:
    return [
        tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations
    ]


@torch.inference_mode()
def generate_answers(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    conversations: list[list[Message]],
    settings: GenerationSettings,
    *,
    desc: str = "generate",
    show_progress: bool = False,
) -> list[Answer]:
    """Greedy answers to each conversation (in the model's chat template), in the order given."""
    texts = _render(tokenizer, conversations)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
    eos_ids = set(eos_ids_of(model, tokenizer))
    answers: dict[int, Answer] = {}
    sides = tokenizer.padding_side, tokenizer.truncation_side
    # Decoder-only generation continues from the right edge: pad on the left, and cut over-long
    # conversations from the left (oldest turns) so the generation prompt stays.
    tokenizer.padding_side = tokenizer.truncation_side = "left"
    try:
        with tqdm(total=len(texts), desc=desc, unit="prompt", disable=not show_progress) as progress:
            for start in range(0, len(order), settings.batch_size):
                batch = order[start : start + settings.batch_size]
                encoded = tokenizer(
                    [texts[i] for i in batch],
                    return_tensors="pt",
                    padding=True,
                    truncation=True,
                    max_length=settings.max_input_tokens,
                    add_special_tokens=False,
                ).to(model.device)
                output = model.generate(
                    **encoded,
                    max_new_tokens=settings.max_new_tokens,
                    do_sample=False,
                    repetition_penalty=settings.repetition_penalty,
                    pad_token_id=tokenizer.pad_token_id,
                )
                new_tokens = output[:, encoded["input_ids"].shape[1] :].tolist()
                for index, tokens in zip(batch, new_tokens, strict=True):
                    answers[index] = decode_answer(tokenizer, tokens, eos_ids)
                progress.update(len(batch))
    finally:
        tokenizer.padding_side, tokenizer.truncation_side = sides
    return [answers[i] for i in range(len(texts))]


def eos_ids_of(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    configured = model.generation_config.eos_token_id
    ids = configured if isinstance(configured, list) else [configured]
    return [i for i in [*ids, tokenizer.eos_token_id] if i is not None]


def decode_answer(tokenizer: PreTrainedTokenizerBase, tokens: list[int], eos_ids: set[int]) -> Answer:
    """The answer up to its first end-of-turn token (any engine's greedy tokens, decoded one way)."""
    end = next((position for position, token in enumerate(tokens) if token in eos_ids), None)
    kept = tokens if end is None else tokens[:end]
    return Answer(tokenizer.decode(kept, skip_special_tokens=True).strip(), len(kept), end is not None)
