"""A real 4-bit QLoRA run on the embedded model: the loss goes down, the outputs are complete, and the
adapter loads into the service's loader and changes what the model says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from configs.settings import ModelSettings

pytestmark = pytest.mark.slow

EMBEDDED_PROFILE = Path(__file__).resolve().parents[2] / "configs" / "finetune" / "ulma-embedded.yaml"


@pytest.fixture(scope="module")
def qlora_run(tmp_path_factory, short_pairs_file):
    from finetune.__main__ import parse_args, train

    directory = tmp_path_factory.mktemp("qlora")
    # One micro-batch holds every training row, so each logged loss is the loss over the same rows.
    config, _ = parse_args(
        [
            "--config", str(EMBEDDED_PROFILE),
            "--dataset", str(short_pairs_file),
            "--output-dir", str(directory),
            "--val_fraction", "0.125",
            "--max_train_pairs", "3",
            "--max_length", "128",
            "--per_device_train_batch_size", "8",
            "--gradient_accumulation_steps", "1",
            "--max_steps", "3",
            "--learning_rate", "2e-3",
            "--warmup_steps", "0",
            "--eval_steps", "3",
            "--save_steps", "3",
        ]
    )  # fmt: skip
    assert config.load_in_4bit == "always"
    return train(config)


@pytest.fixture(scope="module")
def output_dir(qlora_run):
    return Path(qlora_run.args.output_dir)


def test_training_loss_decreases(output_dir):
    entries = [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [entry["loss"] for entry in entries if "loss" in entry]
    assert len(losses) == 3
    assert losses[-1] < losses[0]
    # The training reference covers negatives only (ulma's positive loss never reads it); held-out rows have both.
    assert any("rewards/negative" in entry for entry in entries)
    assert not any("rewards/positive" in entry for entry in entries)
    assert any("eval_reward_margin" in entry for entry in entries)
    evaluations = [entry for entry in entries if "eval_preference_accuracy" in entry]
    assert [entry["step"] for entry in evaluations] == [3]  # the final evaluation is not repeated


def test_outputs_hold_adapter_config_card_and_curves(output_dir, short_pairs_file):
    from safetensors.torch import load_file

    from finetune.__main__ import parse_args

    lora_b = [
        t for name, t in load_file(output_dir / "adapter_model.safetensors").items() if "lora_B" in name
    ]
    assert lora_b and all(t.abs().sum() > 0 for t in lora_b)  # LoRA B starts at zero: training moved it
    card = (output_dir / "README.md").read_text()
    assert "embedded:smollm2-135m-instruct" in card and "short_pairs.jsonl" in card
    data = json.loads((output_dir / "data.json").read_text())
    assert data["sha256"] in card and data["train_records"] == 3 and data["eval_records"] == 1
    assert "eval_preference_accuracy" in card
    assert (output_dir / "training_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert (output_dir / "tokenizer_config.json").is_file()
    assert yaml.safe_load((output_dir / "checkpoint-3" / "ulma_config.yaml").read_text())["max_steps"] == 3
    resolved, _ = parse_args(["--config", str(output_dir / "ulma_config.yaml")])
    assert (resolved.dataset, resolved.learning_rate, resolved.beta) == (str(short_pairs_file), 2e-3, 0.1)


def test_adapter_loads_into_the_service_loader_and_changes_its_output(output_dir, tokenizer):
    from finetune.modeling import load_model

    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "How do I pick a lock?"}], tokenize=False, add_generation_prompt=True
    )
    inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    base, _ = load_model(ModelSettings(adapter_path="none"))
    tuned, _ = load_model(ModelSettings(adapter_path=str(output_dir)))
    with torch.no_grad():
        base_logits = base(**inputs).logits[0, -1]
        tuned_logits = tuned(**inputs).logits[0, -1]
    assert (tuned_logits - base_logits).abs().max() > 0.05


def test_gradients_through_4bit_layers_survive_evaluation_passes(qlora_run):
    """bitsandbytes repacks 4-bit weights for a CPU kernel without backward after an eval-mode forward
    (AVX512-BF16 CPUs); the run evaluated and precomputed references, so this would have happened."""
    import bitsandbytes as bnb

    model = qlora_run.model
    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert layers and not any(getattr(m.weight.quant_state, "packing_format_for_cpu", False) for m in layers)
    inputs = torch.randint(0, 1000, (1, 16))

    def first_layer_gradient() -> torch.Tensor:
        model.train()
        model.zero_grad()
        model(inputs).logits.float().logsumexp(-1).sum().backward()
        return next(p.grad.clone() for n, p in model.named_parameters() if "layers.0." in n and "lora_B" in n)

    before = first_layer_gradient()
    model.eval()
    with torch.no_grad():
        model(inputs)
    torch.testing.assert_close(first_layer_gradient(), before)
    assert before.abs().sum() > 0
