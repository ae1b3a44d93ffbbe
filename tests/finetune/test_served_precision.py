"""The loader serves an adapter on the base precision it was trained and validated on."""

from __future__ import annotations

from pathlib import Path

from configs.settings import EMBEDDED_ADAPTER, ModelSettings, QuantizationSettings
from finetune.modeling import served_precision


def test_an_adapter_trained_on_full_precision_keeps_it_under_auto(tmp_path: Path) -> None:
    (tmp_path / "ulma_config.yaml").write_text("load_in_4bit: never\n")
    assert served_precision(ModelSettings(), tmp_path).quantization.load_in_4bit == "never"
    forced = ModelSettings(quantization=QuantizationSettings(load_in_4bit="always"))
    assert served_precision(forced, tmp_path).quantization.load_in_4bit == "always"  # explicit wins


def test_an_adapter_trained_on_nf4_is_served_as_before(tmp_path: Path) -> None:
    (tmp_path / "ulma_config.yaml").write_text("load_in_4bit: always\n")
    assert served_precision(ModelSettings(), tmp_path).quantization.load_in_4bit == "auto"


def test_the_shipped_adapter_is_served_in_full_precision_everywhere() -> None:
    assert served_precision(ModelSettings(), EMBEDDED_ADAPTER).quantization.load_in_4bit == "never"
