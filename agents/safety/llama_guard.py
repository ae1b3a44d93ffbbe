"""The `llama_guard` backend: Llama Guard 3 (8B or 1B) loaded through the project's one 4-bit loader.

The verdict is the model's own greedy answer, parsed; the score is P("unsafe") against P("safe") for the
first generated token, as the Llama Guard model card suggests. A per-stage threshold in the settings
switches the decision to that score instead.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from agents.messages import ChatMessages
from agents.safety.llama_guard_format import Role, llama_guard_prompt, parse_guard_output
from agents.safety.text_guard import TextAnswerGuard, answer_to_verdict
from agents.safety.verdict import Judge, Verdict
from configs.errors import AppError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from configs.settings import AppSettings

logger = logging.getLogger(__name__)

MAX_NEW_TOKENS = 12  # "unsafe\nS1,S10" and an end token fit easily


class GuardLoadError(AppError, RuntimeError):
    """The guard model cannot be loaded; the message says where to get it or what to use instead."""


class LlamaGuardGuard(TextAnswerGuard):
    name = "llama_guard"

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        categories: list[str],
        fail_closed: bool = True,
        request_threshold: float | None = None,
        response_threshold: float | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.categories = categories
        self.fail_closed = fail_closed
        self.thresholds = {"request": request_threshold, "response": response_threshold}
        # First token of each word: enough to tell the two answers apart at the first step.
        self.safe_token = tokenizer.encode("safe", add_special_tokens=False)[0]
        self.unsafe_token = tokenizer.encode("unsafe", add_special_tokens=False)[0]
        if self.safe_token == self.unsafe_token:
            raise ValueError("the guard's tokenizer gives 'safe' and 'unsafe' the same first token")

    @classmethod
    def from_settings(cls, settings: AppSettings, judge: Judge | None = None) -> LlamaGuardGuard:
        """Llama Guard named by `safety.llama_guard_model`, through the 4-bit loader of `settings.model`."""
        from finetune.modeling import ModelLoadError, load_model

        model_settings = settings.model.model_copy(
            update={"name_or_path": settings.safety.llama_guard_model, "adapter_path": None}
        )
        logger.info("loading Llama Guard %s", settings.safety.llama_guard_model)
        try:
            model, tokenizer = load_model(model_settings)
        except (OSError, ModelLoadError) as exc:
            raise GuardLoadError(
                f"cannot load Llama Guard {settings.safety.llama_guard_model!r} ({exc}). It is gated on the Hugging "
                "Face hub: accept its license and download it, or set safety.llama_guard_model to a local folder, "
                "or use safety.backend 'classifier'"
            ) from exc
        return cls(
            model,
            tokenizer,
            categories=settings.safety.llama_guard_categories,
            fail_closed=settings.safety.fail_closed,
            request_threshold=settings.safety.request_threshold,
            response_threshold=settings.safety.response_threshold,
        )

    def _assess(self, conversation: ChatMessages, role: Role, *, stage: str) -> Verdict:
        import torch

        started = time.perf_counter()
        prompt = llama_guard_prompt(conversation, role, self.categories)
        inputs = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(self.model.device)
        with torch.inference_mode():
            output = self.model.generate(
                **inputs,
                max_new_tokens=MAX_NEW_TOKENS,
                do_sample=False,
                output_logits=True,
                return_dict_in_generate=True,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        first = output.logits[0][0].float()
        pair = torch.softmax(first[[self.safe_token, self.unsafe_token]], dim=0)
        text = self.tokenizer.decode(output.sequences[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        return answer_to_verdict(
            parse_guard_output(text),
            score=float(pair[1]),
            threshold=self.thresholds[stage],
            fail_closed=self.fail_closed,
            backend=self.name,
            stage=stage,
            started=started,
        )
