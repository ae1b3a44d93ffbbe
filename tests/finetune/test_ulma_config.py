"""Option checks up front, the pieces of evaluation that need no model, and the shipped recipe."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from configs.settings import CONFIG_DIR, EMBEDDED_ADAPTER
from finetune.ulma_config import UlmaConfig, UlmaConfigError
from finetune.ulma_trainer import held_out_metrics, window_metrics


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"loss_type": "kto"}, "--loss_type 'kto' is not one of ulma, pointwise_dpo, sft"),
        ({"load_in_4bit": "maybe"}, "--load_in_4bit 'maybe'"),
        ({"val_fraction": 1.0}, "--val_fraction must be in [0, 1)"),
        ({"remove_unused_columns": True}, "--remove_unused_columns must stay false"),
        ({"max_tokens_per_batch": 512, "max_length": 1024}, "below --max_length"),
    ],
)
def test_impossible_options_are_refused_with_the_flag_to_change(tmp_path, options, message):
    with pytest.raises(
        UlmaConfigError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")
    ):
        UlmaConfig(output_dir=str(tmp_path), **options)


def test_lora_and_model_settings_follow_the_flags(tmp_path):
    config = UlmaConfig(output_dir=str(tmp_path), lora_target_modules=["q_proj", "v_proj"], lora_r=8)
    assert config.lora_settings().target_modules == ["q_proj", "v_proj"] and config.lora_settings().r == 8
    assert UlmaConfig(output_dir=str(tmp_path)).lora_settings().target_modules == "all-linear"
    assert config.model_settings().quantization.load_in_4bit == "always"
    assert not UlmaConfig(output_dir=str(tmp_path), loss_type="sft").needs_reference


def test_preference_accuracy_counts_complete_pairs_only():
    metrics = held_out_metrics(
        rewards=np.array([0.3, 0.1, -0.2, 0.4, 0.5]),
        logps=np.array([-1.0, -2.0, -1.5, -1.2, -0.9]),
        scores=np.array([1.0, 0.0, 1.0, 0.0, 1.0]),
        pair_ids=np.array([0, 0, 1, 1, 2]),  # pair 2 lost its rejected row
        with_rewards=True,
    )
    assert metrics["preference_accuracy"] == 0.5 and metrics["preference_pairs"] == 2
    assert metrics["reward_margin"] == pytest.approx((0.3 - 0.2 + 0.5) / 3 - (0.1 + 0.4) / 2)
    assert metrics["logps_positive"] == pytest.approx((-1.0 - 1.5 - 0.9) / 3)


def test_without_a_reference_only_log_probs_are_reported():
    metrics = held_out_metrics(
        rewards=np.zeros(2),
        logps=np.array([-1.0, -3.0]),
        scores=np.ones(2),
        pair_ids=np.array([0, 1]),
        with_rewards=False,
    )
    assert metrics == {"logps_positive": -2.0}


def test_window_metrics_average_each_side():
    # per side: reward sum, rows with a reward, logp sum, rows; positives then negatives
    metrics = window_metrics([0.2, 2, -3.0, 2, -0.3, 2, -4.0, 2], with_rewards=True)
    assert metrics == pytest.approx(
        {
            "rewards/positive": 0.1,
            "logps/positive": -1.5,
            "rewards/negative": -0.15,
            "logps/negative": -2.0,
            "rewards/margin": 0.25,
        }
    )
    assert window_metrics([0.0, 2, -3.0, 2, 0.0, 0, 0.0, 0], with_rewards=True) == {
        "logps/positive": -1.5,
        "rewards/positive": 0.0,
    }


def test_window_metrics_skip_rewards_of_positives_trained_without_reference():
    metrics = window_metrics([0.0, 0, -3.0, 2, -0.3, 2, -4.0, 2], with_rewards=True)
    assert metrics == pytest.approx(
        {"logps/positive": -1.5, "rewards/negative": -0.15, "logps/negative": -2.0}
    )


def test_the_aligned_profile_is_the_shipped_adapters_recipe() -> None:
    """configs/finetune/ulma-embedded-lookalikes.yaml documents how the shipped adapter was trained: every
    setting it makes equals the one recorded in the adapter's resolved config. Locations aside: the output folder,
    and the data file's path (a sweep trains on a build folder of its own; the data itself is identified by the
    sha256 in the adapter's data.json and by its build manifest)."""
    profile = yaml.safe_load((CONFIG_DIR / "finetune" / "ulma-embedded-lookalikes.yaml").read_text())
    trained = yaml.safe_load((EMBEDDED_ADAPTER / "ulma_config.yaml").read_text())
    differing = {
        key: (value, trained.get(key)) for key, value in profile.items() if trained.get(key) != value
    }
    assert differing.keys() <= {"output_dir", "dataset"}, differing
    assert Path(trained["dataset"]).name == Path(profile["dataset"]).name  # the same file, built in another folder
