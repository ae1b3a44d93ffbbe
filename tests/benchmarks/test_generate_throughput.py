"""The generation benchmark: its arithmetic, and one end-to-end run on CPU at toy size through the real service
(the continuous engine behind `python -m api`), with the documented fields in the result file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.engine_agreement import common_prefix
from benchmarks.generate_throughput import (
    PROCESS_CPU,
    SERVICE_TOKENS,
    SIDES,
    VLLM_PROMPT_TOKENS,
    VLLM_TOKENS,
    Endpoint,
    Prompt,
    build_report,
    burst_window,
    counter,
    entry_name,
    main,
    median_burst,
    model_config,
    node_ms_per_run,
    node_totals,
    prompt_text,
    ratio,
    replica_counts,
    reported_entry,
    served_attention,
    service_config,
    vllm_command,
)
from benchmarks.servers import env_pair
from configs.settings import DEFAULT_CACHE_DIR
from finetune.modeling import ensure_embedded_model, load_tokenizer


@pytest.fixture(scope="module")
def embedded_tokenizer_dir() -> Path:
    return ensure_embedded_model(DEFAULT_CACHE_DIR / "models")


def test_ratios_and_first_differences() -> None:
    assert ratio(300.0, 10.0) == 30.0
    assert ratio(None, 10.0) is None and ratio(5.0, None) is None
    assert common_prefix([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix([1, 2], [1, 2, 3]) == 2
    assert common_prefix([9], [1]) == 0


def test_the_vllm_side_points_the_service_at_its_own_vllm_server(tmp_path: Path) -> None:
    import argparse

    args = argparse.Namespace(model_dir=tmp_path, concurrency=[8, 32], new_tokens=128, vllm_python="/opt/py",
                              vllm_gpu_memory_utilization=0.7, vllm_arg=["--stream-interval=4"],
                              vllm_weights="bf16", int8_group_size=64)
    command = vllm_command(args, 8123)
    assert command.pop() == "--stream-interval=4"  # --vllm-arg, passed through last
    assert command[:3] == ["/opt/py", "-m", "vllm.entrypoints.openai.api_server"]
    flags = dict(zip(command[3::2], command[4::2], strict=True))
    assert flags["--model"] == str(tmp_path / "merged") and flags["--port"] == "8123"
    assert flags["--host"] == "127.0.0.1" and flags["--gpu-memory-utilization"] == "0.7"
    assert int(flags["--max-num-seqs"]) >= 32  # every concurrent request in one batch
    remote = model_config(SIDES["project_vllm"], None, 32, 128, "http://127.0.0.1:8123")
    assert remote["backend"] == "openai" and remote["max_new_tokens"] == 128
    assert remote["openai"]["base_url"] == "http://127.0.0.1:8123/v1"
    assert remote["openai"]["model"] == flags["--served-model-name"]
    assert remote["openai"]["max_concurrent_requests"] == 32
    local = model_config(SIDES["project"], tmp_path, 32, 128, None)
    assert local["engine"]["kind"] == "continuous" and local["adapter_path"] == str(tmp_path / "adapter")
    with pytest.raises(ValueError, match="needs the model's folder"):
        model_config(SIDES["project"], None, 32, 128, None)
    # --vllm-weights int8 serves the int8 export of the same merged copy, named by its group size
    args.vllm_weights = "int8"
    assert vllm_command(args, 8123)[4] == str(tmp_path / "merged-int8-g64")
    args.int8_group_size = 0
    assert vllm_command(args, 8123)[4] == str(tmp_path / "merged-int8-gchannel")


def test_the_report_names_the_attention_backend_vllm_logged(tmp_path: Path) -> None:
    import argparse

    log = tmp_path / "vllm.log"
    log.write_text("(EngineCore pid=7) INFO [cuda.py:482] Using FLASH_ATTN attention backend out of potential "
                   "backends: ['FLASH_ATTN', 'TRITON_ATTN'].\n")

    args = argparse.Namespace(device="cpu")
    assert served_attention(SIDES["project_vllm"], args, log) == "vllm:FLASH_ATTN"
    log.write_text("INFO starting\n")
    assert served_attention(SIDES["project_vllm"], args, log) == "vllm: not in its log"
    assert served_attention(SIDES["baseline"], args) is None


def test_graph_steps_are_timed_per_run_between_two_scrapes() -> None:
    scrape = ('rag_node_seconds_count{node="safety_in"} 3.0\nrag_node_seconds_sum{node="safety_in"} 0.03\n'
              'rag_node_seconds_count{node="generate"} 1.0\nrag_node_seconds_sum{node="generate"} 2.0\n')
    later = scrape.replace("3.0", "5.0").replace("0.03", "0.07")
    assert node_ms_per_run(node_totals([scrape]), node_totals([later])) == {"safety_in": 20.0}  # generate: no run
    assert node_ms_per_run({}, node_totals([scrape])) == {"safety_in": 10.0, "generate": 2000.0}
    # two replicas add up; a server that is not the service has no steps
    assert node_ms_per_run({}, node_totals([scrape, later])) == {"safety_in": 12.5, "generate": 2000.0}
    assert node_ms_per_run({}, node_totals(["vllm:num_requests_running 3.0\n"])) == {}


def test_token_counters_of_the_service_and_of_vllm() -> None:
    service = "# TYPE rag_generated_tokens_total counter\nrag_generated_tokens_total 512.0\nrag_turns_total 4.0\n"
    assert counter(service, SERVICE_TOKENS) == 512.0
    vllm = (  # one sample per label set (an engine each), summed
        "# HELP vllm:generation_tokens_total Number of generation tokens processed.\n"
        'vllm:generation_tokens_total{engine="0",model_name="ulma"} 1000.0\n'
        'vllm:generation_tokens_total{engine="1",model_name="ulma"} 24.0\n'
        'vllm:prompt_tokens_total{engine="0",model_name="ulma"} 2570.0\n'
    )
    assert counter(vllm, VLLM_TOKENS) == 1024.0 and counter(vllm, VLLM_PROMPT_TOKENS) == 2570.0
    assert counter(vllm, SERVICE_TOKENS) == 0.0
    assert counter("process_cpu_seconds_total 12.5\nprocess_cpu_seconds_created 1.0\n", PROCESS_CPU) == 12.5


def test_replicas_get_requests_in_turn_and_stores_of_their_own(tmp_path: Path) -> None:

    import yaml

    endpoint = Endpoint(("http://a", "http://b"), "aligned-rag", SERVICE_TOKENS)
    assert [endpoint.url(turn) for turn in range(3)] == ["http://a", "http://b", "http://a"]
    embedding = {"device": "cpu", "runtime": "torch"}
    configs = [yaml.safe_load(service_config(SIDES["project_vllm"], tmp_path, 8000 + replica, max_concurrent=8,
                                             new_tokens=16, embedding=embedding, model_server_url="http://127.0.0.1:9",
                                             replica=replica).read_text()) for replica in (0, 1)]
    assert configs[0]["vector_store"]["persist_dir"] != configs[1]["vector_store"]["persist_dir"]
    assert configs[0]["embedding"] == {"device": "cpu", "runtime": "torch"} and configs[1]["api"]["port"] == 8001


def test_replica_counts_apply_where_the_model_has_a_server_of_its_own() -> None:
    import argparse

    args = argparse.Namespace(service_replicas=[1, 4], project_side="project_vllm")
    assert replica_counts(SIDES["project_vllm"], args) == [1, 4]
    assert replica_counts(SIDES["baseline"], args) == [1]  # each replica would load its own copy of the model
    assert [entry_name(SIDES["project_vllm"], n) for n in (1, 4)] == ["project_vllm", "project_vllm_x4"]
    assert reported_entry(SIDES["project_vllm"], args) == "project_vllm_x4"
    args.service_replicas = [4]
    assert reported_entry(SIDES["project"], args) == "project_x4"
    # the baseline ran behind the first count, and the report finds it there (its ratios were empty before)
    assert reported_entry(SIDES["baseline"], args) == "baseline_x4"


def test_the_report_takes_its_rows_and_ratios_from_the_entries_the_sides_ran_as(embedded_tokenizer_dir: Path) -> None:
    import argparse

    from configs.settings import ModelSettings

    def row(single: float, at_32: float) -> dict[str, float]:
        return {"single_stream_tokens_per_s": single, "aggregate_tokens_per_s_at_32": at_32}

    args = argparse.Namespace(service_replicas=[4], project_side="project_vllm", sides=["project_vllm", "baseline"],
                              concurrency=[8, 32], shape="tiny", new_tokens=4, vllm_weights="bf16")
    tokenizer = load_tokenizer(ModelSettings(name_or_path=str(embedded_tokenizer_dir)))
    sides = {"project_vllm_x4": row(200.0, 3000.0), "baseline_x4": row(8.0, 40.0)}
    report = build_report(args, ["--sides", "project_vllm", "baseline"], {}, tokenizer, Prompt("Hello."), sides)
    assert report["project_side"] == "project_vllm_x4" and report["baseline"] == sides["baseline_x4"]
    assert (report["ratio_single"], report["ratio_aggregate"]) == (25.0, 75.0)


@pytest.mark.parametrize("flags", [["--service-replicas", "1", "0"], ["--bursts", "0"]])
def test_a_count_below_one_is_a_usage_error(flags: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:  # before any model is written
        main(["--tokenizer", "t", *flags])
    assert exit_info.value.code == 2 and "at least 1, got '0'" in capsys.readouterr().err


def test_vllm_environment_pairs(capsys: pytest.CaptureFixture[str]) -> None:
    assert env_pair("PYTHONPATH=/a:/b=c") == ("PYTHONPATH", "/a:/b=c") and env_pair("X=") == ("X", "")
    with pytest.raises(SystemExit) as exit_info:  # a usage error, before any model is written
        main(["--tokenizer", "t", "--vllm-env", "PYTHONPATH"])
    assert exit_info.value.code == 2 and "expected KEY=VALUE" in capsys.readouterr().err


def test_the_merged_copy_for_vllm_carries_the_adapter_and_the_tokenizer(embedded_tokenizer_dir: Path,
                                                                        tmp_path: Path) -> None:
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    from benchmarks.llama_shape import save_merged_model, save_random_adapter, save_random_model
    from configs.settings import ModelSettings

    tokenizer = load_tokenizer(ModelSettings(name_or_path=str(embedded_tokenizer_dir)))
    base = save_random_model("tiny", tmp_path / "model", "cpu", tokenizer)
    adapter = save_random_adapter(base, tmp_path / "adapter", "cpu")
    merged = save_merged_model(base, adapter, tmp_path / "merged", "cpu")
    before = LlamaForCausalLM.from_pretrained(base).model.layers[0].self_attn.q_proj.weight
    after = LlamaForCausalLM.from_pretrained(merged).model.layers[0].self_attn.q_proj.weight
    assert before.shape == after.shape and not torch.equal(before, after)  # the adapter is in the weights
    assert len(AutoTokenizer.from_pretrained(merged)) == len(tokenizer)  # a server needs the tokenizer beside them


def test_prompts_have_the_asked_length(embedded_tokenizer_dir: Path) -> None:
    from configs.settings import ModelSettings

    tokenizer = load_tokenizer(ModelSettings(name_or_path=str(embedded_tokenizer_dir)))
    for tokens in (64, 256):
        length = len(tokenizer(prompt_text(tokenizer, tokens), add_special_tokens=False)["input_ids"])
        assert tokens <= length < tokens + 40  # whole paragraphs: at most one too many


@pytest.mark.slow
def test_a_toy_run_through_the_service_writes_the_documented_fields(
    embedded_tokenizer_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "generate_throughput.json"
    code = main([
        "--tokenizer", str(embedded_tokenizer_dir), "--shape", "tiny", "--device", "cpu",
        "--model-dir", str(tmp_path / "model"), "--sides", "project", "--concurrency", "2",
        "--single-runs", "1", "--warmup", "0", "--new-tokens", "4", "--prompt-tokens", "32",
        "--window-s", "120", "--ready-timeout-s", "300", "--service-replicas", "2", "--bursts", "2",
        "--out", str(out),
    ])
    assert code == 0
    report = json.loads(out.read_text())
    project = report["project"]
    assert project["engine"] == "continuous"
    assert project["attention"] == "model default"  # off the GPU `auto` leaves the model's kernel
    assert "flash_attn_4" in report["versions"]
    assert project["single_stream_tokens_per_s"] > 0 and project["ttft_ms"] > 0
    assert project["aggregate_at_2"]["completed"] == 2 and not project["aggregate_at_2"]["errors"]
    assert len(project["aggregate_at_2"]["tokens_per_s_each_burst"]) == 2
    assert project["service_replicas"] == 2 and project["aggregate_at_2"]["server_cpu_cores"] > 0
    assert {"safety_in", "retrieve", "generate", "safety_out"} <= set(project["aggregate_at_2"]["node_ms_per_run"])
    assert {"command", "device", "versions", "baseline", "ratio_single", "ratio_aggregate"} <= set(report)


def test_the_window_holds_at_least_two_single_stream_requests() -> None:
    assert burst_window(20.0, 200.0, 128) == 20.0
    assert burst_window(20.0, 5.8, 128) == 44.1  # one request alone takes 22 s
    assert burst_window(20.0, 0.0, 128) == 20.0  # nothing measured: the asked window


def test_the_median_burst_is_reported_with_every_burst_rate() -> None:
    bursts = [{"tokens_per_s": rate, "ttft_ms_p50": rate / 10} for rate in (50.0, 90.0, 70.0)]
    assert median_burst(bursts) == {"tokens_per_s": 70.0, "ttft_ms_p50": 7.0,
                                    "tokens_per_s_each_burst": [50.0, 90.0, 70.0]}
    assert median_burst(bursts[:2])["tokens_per_s"] == 50.0  # an even count: the lower middle one
    cut = [{"tokens_per_s": None, "completed": 0}, {"tokens_per_s": 30.0, "completed": 2}]
    assert median_burst(cut)["completed"] == 0  # a burst with nothing done counts as 0, not skipped


def test_distinct_prompts_give_every_request_a_text_of_its_own() -> None:
    same = Prompt("Summarise the review.")
    assert {same.next() for _ in range(3)} == {"Summarise the review."}
    distinct = Prompt("Summarise the review.", distinct=True)
    sent = [distinct.next() for _ in range(3)]
    assert len(set(sent)) == 3 and all(text.endswith(": Summarise the review.") for text in sent)
