"""`UlmaTrainer`: transformers' `Trainer` with the ULMA point-wise loss, reward logs and preference accuracy.

The reference model is the base with the LoRA adapter disabled. With `precompute_ref_logps` its log-probs are
computed once before training (cached in the output directory, so `--resume` does not redo them) and a step
does no reference forward; otherwise every step runs one, as the ULMA reference code does.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate.utils import broadcast_object_list, gather_object
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import EvalPrediction, Trainer

from finetune.collator import FlatteningCollator, PaddedCollator, TokenBudgetBatchSampler
from finetune.forward import response_logps
from finetune.losses import LossOutput, normalise, pointwise_loss
from finetune.ulma_config import UlmaConfig, UlmaConfigError

logger = logging.getLogger(__name__)

REF_COLUMN = "ref_sum_logps"
REF_CACHE_DIR = "ref_logps"
# Logging window sums, for positives then negatives: reward, rows with a reward, log-prob, rows.
_POS_REWARD, _POS_REWARD_N, _POS_LOGP, _POS_N, _NEG_REWARD, _NEG_REWARD_N, _NEG_LOGP, _NEG_N = range(8)


class UlmaTrainer(Trainer):
    def __init__(
        self,
        model: torch.nn.Module,
        args: UlmaConfig,
        train_dataset: Any,
        eval_dataset: Any | None = None,
        processing_class: Any | None = None,
        callbacks: list | None = None,
    ) -> None:
        check_data(args, train_dataset, eval_dataset)
        check_model(args, model)
        collator = (
            FlatteningCollator() if args.padding_free else PaddedCollator(processing_class.pad_token_id)
        )
        super().__init__(
            model=model,
            args=args,
            data_collator=collator,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            compute_metrics=self.preference_metrics,
            callbacks=callbacks,
        )
        # compute_loss returns a per-micro-batch mean, so the Trainer must average over accumulation steps.
        self.model_accepts_loss_kwargs = False
        if self.is_fsdp_enabled:
            check_fsdp(args, model)
        self._window = torch.zeros(8, dtype=torch.float64, device=self.args.device)
        if args.precompute_ref_logps and args.needs_reference:
            self.train_dataset = self.with_reference_logps(
                self.train_dataset, "train", positives=args.positives_need_reference
            )
            if self.eval_dataset is not None:  # preference accuracy compares both rows' rewards
                self.eval_dataset = self.with_reference_logps(self.eval_dataset, "held-out", positives=True)

    # ------------------------------------------------------------ log-probs and loss

    def _response_logps(
        self, model: torch.nn.Module, batch: dict[str, Any]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        causal_lm = self.accelerator.unwrap_model(model).get_base_model()
        return response_logps(
            model,
            causal_lm,
            batch,
            response_only_logits=self.args.response_only_logits,
            chunk_size=self.args.logits_chunk_size,
            causal_mask_only=self.args.causal_mask_only,
        )

    @torch.no_grad()
    def _reference_sums(self, model: torch.nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        with self.accelerator.unwrap_model(model).disable_adapter(), self.accelerator.autocast():
            return self._response_logps(model, batch)[0]

    def batch_loss(self, model: torch.nn.Module, batch: dict[str, Any]) -> tuple[LossOutput, torch.Tensor]:
        """The loss of one micro-batch and its rows' (normalised) policy log-probs."""
        args = self.args
        # The mixed precision accelerate gives the model's forward also covers the response-only lm_head,
        # which runs outside it (else a bf16 run would do that matmul in float32).
        with self.accelerator.autocast():
            sums, counts = self._response_logps(model, batch)
        logps = normalise(sums, counts, args.length_normalize)
        ref_logps = None
        if args.needs_reference:
            ref_sums = batch[REF_COLUMN] if REF_COLUMN in batch else self._reference_sums(model, batch)
            ref_logps = normalise(ref_sums.to(sums.dtype), counts, args.length_normalize)
        output = pointwise_loss(
            logps,
            ref_logps,
            batch["score"],
            loss_type=args.loss_type,
            beta=args.beta,
            margin=args.margin,
            positive_weight=args.positive_weight,
            negative_weight=args.negative_weight,
        )
        return output, logps.detach()

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        output, logps = self.batch_loss(model, inputs)
        positive = inputs["score"] > 0.5
        negative = ~positive
        # Summed on the device and read only when logging: no host sync per micro-batch.
        rewarded = ~output.rewards.isnan()  # training rows whose reference was skipped have no reward
        self._window += torch.stack(
            [
                output.rewards[positive].nansum(),
                (positive & rewarded).sum(),
                logps[positive].sum(),
                positive.sum(),
                output.rewards[negative].nansum(),
                (negative & rewarded).sum(),
                logps[negative].sum(),
                negative.sum(),
            ]
        ).to(self._window)
        return (output.loss, {"rewards": output.rewards, "logps": logps}) if return_outputs else output.loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:  # a training log: add the window's rewards and log-probs
            window = self.accelerator.reduce(self._window, reduction="sum").tolist()
            self._window.zero_()
            logs.update(window_metrics(window, with_rewards=self.args.needs_reference))
        super().log(logs, start_time)

    # ------------------------------------------------------------ evaluation

    def prediction_step(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        prediction_loss_only: bool,
        ignore_keys: list[str] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            output, logps = self.batch_loss(model, inputs)
        if prediction_loss_only:
            return output.loss.detach(), None, None
        predictions = torch.stack([output.rewards, logps], dim=1).float()
        labels = torch.stack([inputs["score"].float(), inputs["pair_id"].float()], dim=1)
        return output.loss.detach(), predictions, labels

    def preference_metrics(self, prediction: EvalPrediction) -> dict[str, float]:
        predictions = np.asarray(prediction.predictions)
        labels = np.asarray(prediction.label_ids)
        return held_out_metrics(
            rewards=predictions[:, 0],
            logps=predictions[:, 1],
            scores=labels[:, 0],
            pair_ids=labels[:, 1].astype(np.int64),
            with_rewards=self.args.needs_reference,
        )

    # ------------------------------------------------------------ data loading

    def get_train_dataloader(self) -> DataLoader:
        if self.args.max_tokens_per_batch is None:
            return super().get_train_dataloader()
        sampler = TokenBudgetBatchSampler(
            self.train_dataset["length"],
            self.args.max_tokens_per_batch,
            padded=not self.args.padding_free,
            seed=self.args.seed,
            world_size=self.args.world_size,
        )
        loader = DataLoader(
            self.train_dataset,
            batch_sampler=sampler,
            collate_fn=self.data_collator,
            num_workers=self.args.dataloader_num_workers,
            pin_memory=self.args.dataloader_pin_memory,
        )
        return self.accelerator.prepare(loader)

    # ------------------------------------------------------------ reference log-probs, once

    def with_reference_logps(self, dataset: Any, name: str, *, positives: bool) -> Any:
        """`dataset` plus a `ref_sum_logps` column: the adapter-disabled model's log-prob sum per row; NaN for
        score-1 rows unless `positives` (the ulma loss never reads theirs)."""
        fingerprint = self._reference_fingerprint(dataset)
        cache = (
            Path(self.args.output_dir)
            / REF_CACHE_DIR
            / f"{name}-{fingerprint}-{'all' if positives else 'neg'}.npy"
        )
        # The main process decides and reads the cache, and every process takes its values: a process that
        # saw the file differently (another node's disk, a write in flight) would otherwise skip the
        # collective computation the others run, and hang them.
        values = np.load(cache) if self.is_world_process_zero() and cache.is_file() else None
        if self.args.world_size > 1:
            values = broadcast_object_list([values])[0]
        if values is not None:
            logger.info("reference log-probs for %s loaded from %s", name, cache)
        else:
            scores = np.asarray(dataset["score"])
            needed = np.arange(len(dataset)) if positives else np.flatnonzero(scores < 1.0)
            values = np.full(len(dataset), np.nan)
            values[needed] = self._compute_reference_sums(dataset.select(needed), name)
            if self.is_world_process_zero():
                cache.parent.mkdir(parents=True, exist_ok=True)
                partial = cache.with_name(cache.stem + ".partial.npy")
                np.save(partial, values)
                partial.rename(cache)  # a run killed mid-write leaves no truncated cache behind
        return dataset.add_column(REF_COLUMN, values.tolist())

    def _compute_reference_sums(self, dataset: Any, name: str) -> np.ndarray:
        """Forward only, so batches can be several times the training budget. Always padded batches of rows
        grouped by length: little padding, and unlike a packed row (whose sdpa attention spans the whole
        row) the attention cost stays per row. Each process takes every world_size-th batch, then all
        gather the results."""
        args = self.args
        lengths = (
            dataset["length"]
            if "length" in dataset.column_names
            else [len(ids) for ids in dataset["input_ids"]]
        )
        batches = TokenBudgetBatchSampler(lengths, args.ref_tokens_per_batch, padded=True, seed=0)
        collate = PaddedCollator(self.processing_class.pad_token_id)
        mine = batches.batches[args.process_index :: args.world_size]
        model = self.model
        was_training = model.training
        model.eval()
        sums: dict[int, float] = {}
        progress = tqdm(
            mine,
            desc=f"reference log-probs ({name})",
            disable=args.disable_tqdm or not self.is_world_process_zero(),
        )
        with torch.inference_mode():
            for indices in progress:
                columns = dataset[indices]
                rows = [
                    dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)
                ]
                batch = self._prepare_inputs(collate(rows))
                sums.update(
                    zip(indices, self._reference_sums(model, batch).float().cpu().tolist(), strict=True)
                )
        model.train(was_training)
        if args.world_size > 1:
            sums = {index: value for part in gather_object([sums]) for index, value in part.items()}
        return np.array([sums[index] for index in range(len(dataset))], dtype=np.float64)

    def _reference_fingerprint(self, dataset: Any) -> str:
        """Changes with the base model, its quantization, the computation and the token ids."""
        args = self.args
        digest = hashlib.sha256()
        settings = (
            args.model_name_or_path,
            args.load_in_4bit,
            args.bnb_4bit_compute_dtype,
            args.model_dtype,
            args.response_only_logits,
            args.causal_mask_only,
        )
        digest.update(repr(settings).encode())
        for batch in dataset.with_format("numpy").iter(batch_size=4096):
            for column in ("input_ids", "labels"):
                digest.update(np.concatenate(list(batch[column])).astype(np.int64).tobytes())
        return digest.hexdigest()[:16]


def window_metrics(window: list[float], *, with_rewards: bool) -> dict[str, float]:
    """Means over a logging window of the positives' and negatives' rewards and log-probs."""
    metrics: dict[str, float] = {}
    n_pos, n_neg = window[_POS_N], window[_NEG_N]
    if n_pos:
        metrics["logps/positive"] = window[_POS_LOGP] / n_pos
    if n_neg:
        metrics["logps/negative"] = window[_NEG_LOGP] / n_neg
    if with_rewards:
        if window[_POS_REWARD_N]:
            metrics["rewards/positive"] = window[_POS_REWARD] / window[_POS_REWARD_N]
        if window[_NEG_REWARD_N]:
            metrics["rewards/negative"] = window[_NEG_REWARD] / window[_NEG_REWARD_N]
        if "rewards/positive" in metrics and "rewards/negative" in metrics:
            metrics["rewards/margin"] = metrics["rewards/positive"] - metrics["rewards/negative"]
    return metrics


def held_out_metrics(
    *,
    rewards: np.ndarray,
    logps: np.ndarray,
    scores: np.ndarray,
    pair_ids: np.ndarray,
    with_rewards: bool,
) -> dict[str, float]:
    """Rewards, their margin, log-probs, and preference accuracy: the share of held-out pairs whose chosen
    row gets a higher implicit reward than its rejected row (pairs with a row dropped are left out)."""
    positive = scores > 0.5
    metrics: dict[str, float] = {}
    if positive.any():
        metrics["logps_positive"] = float(logps[positive].mean())
    if (~positive).any():
        metrics["logps_negative"] = float(logps[~positive].mean())
    if not with_rewards:
        return metrics
    if positive.any() and (~positive).any():
        metrics["rewards_positive"] = float(rewards[positive].mean())
        metrics["rewards_negative"] = float(rewards[~positive].mean())
        metrics["reward_margin"] = metrics["rewards_positive"] - metrics["rewards_negative"]
    chosen = {int(p): r for p, r, s in zip(pair_ids, rewards, scores, strict=True) if p >= 0 and s == 1.0}
    rejected = {int(p): r for p, r, s in zip(pair_ids, rewards, scores, strict=True) if p >= 0 and s == 0.0}
    pairs = sorted(chosen.keys() & rejected.keys())
    if pairs:
        metrics["preference_accuracy"] = float(np.mean([chosen[p] > rejected[p] for p in pairs]))
        metrics["preference_pairs"] = float(len(pairs))
    return metrics


def check_data(args: UlmaConfig, train_dataset: Any, eval_dataset: Any | None) -> None:
    if eval_dataset is None and args.eval_strategy != "no":
        raise UlmaConfigError(
            "there are no held-out rows to evaluate on: set --val_fraction > 0 (local files) or --eval_split "
            "(hub datasets), or pass --eval_strategy no"
        )
    scores = np.asarray(train_dataset["score"])
    if args.loss_type != "sft" and not (scores < 1.0).any():
        raise UlmaConfigError(
            f"loss_type={args.loss_type!r} needs negative rows (score < 1); {args.dataset} has none: "
            "pass --loss_type sft, or use data with rejected responses"
        )
    if args.loss_type == "sft" and not (scores > 0.0).any():
        raise UlmaConfigError(f"loss_type='sft' needs positive rows (score > 0); {args.dataset} has none")


def check_model(args: UlmaConfig, model: torch.nn.Module) -> None:
    if not hasattr(model, "disable_adapter"):
        raise UlmaConfigError(
            "the model has no LoRA adapter to disable for the reference; build it with load_model"
        )
    config = model.get_base_model().config
    if args.response_only_logits and getattr(config, "final_logit_softcapping", None):
        raise UlmaConfigError(
            f"{config.model_type} caps its final logits, which response_only_logits does not reproduce; "
            "pass --response_only_logits false"
        )


def check_fsdp(args: UlmaConfig, model: torch.nn.Module) -> None:
    """What FSDP (accelerate's FullyShardedDataParallel) cannot run; DDP runs all of it."""
    problems = []
    if args.precompute_ref_logps and args.needs_reference:
        problems.append(
            "the reference log-probs are precomputed before training, but FSDP shards (and, with "
            "cpu_ram_efficient_loading, fills) the model only when training starts: pass "
            "--precompute_ref_logps false (a reference forward per step)"
        )
    if args.response_only_logits:
        problems.append(
            "response_only_logits runs lm_head on hidden states taken from inside the model's forward, "
            "outside the hooks by which FSDP gathers weights and finishes the backward (never verified "
            "there): pass --response_only_logits false"
        )
    if getattr(model, "is_loaded_in_4bit", False) and args.bnb_4bit_quant_storage == "uint8":
        problems.append(
            "FSDP flattens each layer's weights into one tensor of one float dtype, and 4-bit weights stored as "
            "uint8 cannot join it: pass --bnb_4bit_quant_storage bfloat16 (the model dtype)"
        )
    if problems:
        raise UlmaConfigError("under FSDP " + "; ".join(problems))
