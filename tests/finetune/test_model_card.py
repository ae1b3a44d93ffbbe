"""The model card says which precision the adapter was trained on and how the service will serve it."""

from __future__ import annotations

from pathlib import Path

import pytest

from finetune.model_card import render_model_card
from finetune.ulma_config import UlmaConfig

DATA = {
    "source": "var/alignment/train.jsonl", "sha256": "0" * 64, "train_records": 10, "eval_records": 2,
    "train_rows": 12, "train_positive_rows": 7, "eval_rows": 3, "train_report": {"skipped": {}},
}  # fmt: skip


@pytest.mark.parametrize(
    ("load_in_4bit", "trained_on", "tagged_qlora"),
    [("never", "a full-precision base (no 4-bit)", False), ("always", "a 4-bit NF4 base (QLoRA)", True)],
)
def test_card_records_the_training_precision(
    tmp_path: Path, load_in_4bit: str, trained_on: str, tagged_qlora: bool
) -> None:
    config = UlmaConfig(output_dir=str(tmp_path), load_in_4bit=load_in_4bit, use_cpu=True)
    card = render_model_card(config, DATA, {"eval_loss": 1.0}, global_step=5)
    assert f"on {trained_on}, by `python -m finetune`" in card
    assert "## Precision" in card
    assert ("qlora" in card.split("---")[1]) is tagged_qlora
    if load_in_4bit == "never":
        assert "bf16 on CUDA, float32 on CPU, not NF4" in card


def test_shipped_card_matches_its_config() -> None:
    from configs.settings import EMBEDDED_ADAPTER

    card = (EMBEDDED_ADAPTER / "README.md").read_text(encoding="utf-8")
    config = (EMBEDDED_ADAPTER / "ulma_config.yaml").read_text(encoding="utf-8")
    assert "load_in_4bit: never" in config
    assert "a full-precision base (no 4-bit)" in card and "not NF4" in card
