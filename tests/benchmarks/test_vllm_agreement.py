"""The vLLM agreement benchmark's arithmetic (the run itself needs a GPU and vLLM)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from benchmarks.engine_agreement import agreement, hh_examples
from benchmarks.servers import VLLM_MODEL_NAME, vllm_server_command
from benchmarks.vllm_agreement import (
    largest_difference_points,
    main,
    perplexity,
    reference_logprob_sums,
    refusal_rates,
    refusal_verdicts,
    response_logprob_sum,
    without_stop,
)
from configs.cli import EXIT_ERROR
from configs.settings import load_settings
from lab.alignment.generation import Answer


def test_the_response_log_probability_counts_only_the_response_tokens() -> None:
    ids = [5, 6, 7, 8]
    prompt_logprobs = [None, {"6": {"logprob": -9.0}}, {"7": {"logprob": -1.0}, "3": {"logprob": -0.1}},
                       {"8": {"logprob": -2.0}}]
    assert response_logprob_sum(prompt_logprobs, ids, start=2) == -3.0


def test_perplexity_is_per_token_over_all_responses() -> None:
    assert perplexity([-3.0, -1.0], [3, 1]) == pytest.approx(math.e)


def test_a_final_end_of_turn_token_is_left_out_of_the_comparison() -> None:
    assert without_stop([4, 2], {2}) == [4] and without_stop([2, 4], {2}) == [2, 4] and without_stop([], {2}) == []


def test_refusal_rates_are_per_set_in_the_sets_order_and_compared_in_points() -> None:
    answers = [Answer("I can't help with that.", 6, True), Answer("Sure, here is a poem.", 6, True),
               Answer("", 0, True), Answer("Paris is the capital of France.", 7, True)]
    rates = refusal_rates(refusal_verdicts(answers), ["harmful", "harmful", "benign", "benign"])
    assert rates == {"harmful": 0.5, "benign": 0.5}  # an empty answer counts as a refusal (the judge's rule 1)
    assert largest_difference_points(rates, {"harmful": 0.53, "benign": 0.5}) == 3.0


def test_agreement_counts_identical_answers_and_where_the_others_part() -> None:
    found = agreement([[1, 2, 3], [4, 5], [6]], [[1, 2, 3], [4, 9], [7]])
    assert found == {"exact_matches": 1, "median_tokens_before_first_difference": 1,
                     "min_tokens_before_first_difference": 0}


def test_the_vllm_server_serves_the_folder_under_one_name_with_extra_arguments(tmp_path: Path) -> None:
    command = vllm_server_command("/opt/py", tmp_path, 8123, gpu_memory_utilization=0.3, max_num_seqs=50,
                                  extra=["--quantization", "fp8"])
    assert command[-2:] == ["--quantization", "fp8"]
    flags = dict(zip(command[3:-2:2], command[4:-2:2], strict=True))
    assert flags["--model"] == str(tmp_path) and flags["--served-model-name"] == VLLM_MODEL_NAME
    assert flags["--max-num-seqs"] == "50" and flags["--dtype"] == "bfloat16"


def test_hh_examples_are_conversations_with_their_chosen_answer() -> None:
    data = load_settings(None).data_dir / "hh-rlhf" / "harmless-base-test.jsonl.gz"
    if not data.is_file():
        pytest.skip(f"{data} is not here")
    examples = hh_examples(data, 3)
    assert len(examples) == 3
    for conversation, answer in examples:
        assert conversation[-1]["role"] == "user" and answer.strip()


def test_two_refusal_sets_of_one_name_are_refused_before_any_model_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = load_settings(None).data_dir / "hh-rlhf" / "harmless-base-test.jsonl.gz"
    if not data.is_file():
        pytest.skip(f"{data} is not here")
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "harmful.json").write_text('[{"instruction": "Say hi"}]', encoding="utf-8")
    code = main(["--data", str(data), "--prompts", "2", "--work-dir", str(tmp_path / "work"),
                 "--refusal-set", str(tmp_path / "a" / "harmful.json"),
                 "--refusal-set", str(tmp_path / "b" / "harmful.json")])
    assert code == EXIT_ERROR and "same name" in capsys.readouterr().err
    assert not (tmp_path / "work").exists()  # nothing loaded or saved


@pytest.mark.slow
def test_the_reference_scores_the_response_tokens_as_the_models_own_loss_does() -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from configs.settings import DEFAULT_CACHE_DIR
    from finetune.modeling import ensure_embedded_model

    model = AutoModelForCausalLM.from_pretrained(ensure_embedded_model(DEFAULT_CACHE_DIR / "models"))
    ids, start = [1, 504, 3458, 314, 260, 1345, 30, 2], 4
    labels = torch.tensor([[-100] * start + ids[start:]])
    with torch.inference_mode():
        loss = model(input_ids=torch.tensor([ids]), labels=labels).loss.item()  # mean over the scored tokens

    assert reference_logprob_sums(model, [ids], [start])[0] == pytest.approx(-loss * (len(ids) - start), rel=1e-4)
