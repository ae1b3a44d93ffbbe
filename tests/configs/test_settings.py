"""Settings precedence: defaults < YAML profile < environment < explicit overrides."""

from pathlib import Path

import pytest
import yaml

from configs.settings import ConfigError, load_settings

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_defaults_are_the_embedded_models() -> None:
    settings = load_settings()
    assert settings.model.name_or_path == "embedded:smollm2-135m-instruct"
    assert settings.embedding.name_or_path == "embedded:all-minilm-l6-v2"


def test_yaml_env_and_overrides_layer_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    profile = tmp_path / "profile.yaml"
    profile.write_text(yaml.safe_dump({"api": {"port": 8100, "host": "0.0.0.0"}, "retrieval": {"top_k": 7}}))
    assert load_settings(profile).api.port == 8100

    monkeypatch.setenv("APP__API__PORT", "8200")
    settings = load_settings(profile)
    assert (settings.api.port, settings.api.host, settings.retrieval.top_k) == (8200, "0.0.0.0", 7)

    assert load_settings(profile, {"api.port": 8300, "retrieval.top_k": None}).api.port == 8300


def test_production_profiles_serve_llama_merged_in_bf16_or_in_4bit_nf4() -> None:
    large = load_settings(REPO_ROOT / "configs" / "llama31-8b.yaml").model
    small = load_settings(REPO_ROOT / "configs" / "llama31-8b-nf4.yaml").model
    assert large.name_or_path == small.name_or_path == "meta-llama/Llama-3.1-8B-Instruct"
    assert large.quantization.load_in_4bit == "never"
    quant = small.quantization
    assert (quant.load_in_4bit, quant.quant_type, quant.double_quant, quant.compute_dtype) == (
        "always", "nf4", True, "bfloat16",
    )
    # Continuous batching on CUDA, which has no repetition penalty: the profiles do not ask for one.
    assert large.engine.kind == small.engine.kind == "auto"
    assert large.repetition_penalty == small.repetition_penalty == 1.0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("api: [1, 2", "not valid YAML"),
        ("- a\n- b\n", "must hold a mapping"),
        ("api:\n  port: -1\n", "api.port"),
        ("nonsense_section: {}\n", "nonsense_section"),
    ],
)
def test_bad_profiles_give_actionable_errors(tmp_path: Path, content: str, message: str) -> None:
    profile = tmp_path / "bad.yaml"
    profile.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_settings(profile)


def test_missing_profile_is_reported() -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings("does/not/exist.yaml")


def test_placeholder_api_key_is_refused() -> None:
    with pytest.raises(ConfigError, match="placeholder"):
        load_settings(overrides={"api.api_keys": ["changeme"]})


def test_embedded_base_gets_the_shipped_adapter_and_other_bases_none() -> None:
    from configs.settings import EMBEDDED_ADAPTER

    assert load_settings().model.adapter_path == str(EMBEDDED_ADAPTER)
    assert (EMBEDDED_ADAPTER / "adapter_config.json").is_file()
    assert load_settings(overrides={"model.name_or_path": "org/other-model"}).model.adapter_path is None
    assert load_settings(overrides={"model.adapter_path": "none"}).model.adapter_path is None


def test_vllm_profile_generates_on_a_remote_server_with_the_adapter() -> None:
    model = load_settings(REPO_ROOT / "configs" / "vllm-remote.yaml").model
    assert model.backend == "openai" and model.openai.model == "ulma"
    assert model.openai.base_url.endswith("/v1") and model.openai.api_key is None  # the key comes from the env
    assert model.openai.extra_body == {"repetition_penalty": 1.1}  # vLLM's knob beyond OpenAI's fields


def test_the_remote_backend_needs_a_server_and_a_model_name(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="model.openai.base_url and model.openai.model"):
        load_settings(overrides={"model.backend": "openai", "model.openai.model": "ulma"})
    monkeypatch.setenv("APP__MODEL__OPENAI__API_KEY", "server-key-1234")
    key = load_settings(REPO_ROOT / "configs" / "vllm-remote.yaml").model.openai.api_key
    assert key.get_secret_value() == "server-key-1234" and "server-key-1234" not in repr(key)
