"""`python -m finetune`: help, one-line errors for bad options and data, kill and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import write_jsonl

REPO_ROOT = Path(__file__).resolve().parents[2]
EMBEDDED_PROFILE = REPO_ROOT / "configs" / "finetune" / "ulma-embedded.yaml"


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "finetune", *args],
        check=False,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_main(capsys, *args: str) -> tuple[int, str]:
    """The CLI in-process (a subprocess pays ~15 s of imports per call on a busy 2-core machine)."""
    from finetune.__main__ import main

    code = main(list(args))
    return code, capsys.readouterr().err


def test_help_lists_the_ulma_and_speed_options(capsys):
    from finetune.__main__ import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--config", "--resume", "--loss_type", "--beta", "--precompute_ref_logps", "--padding_free"):
        assert flag in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--beta", "0"], "--beta must be > 0"),
        (["--max_tokens_per_batch", "100"], "below --max_length"),
        (["--dataset", "missing/file.jsonl"], "data file not found"),
    ],
)
def test_bad_options_fail_with_one_line(capsys, tmp_path, args, message):
    code, err = run_main(capsys, "--config", str(EMBEDDED_PROFILE), "--output-dir", str(tmp_path), *args)
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("error: ")


def test_unknown_profile_key_is_refused(capsys, tmp_path):
    profile = tmp_path / "bad.yaml"
    profile.write_text("betta: 0.2\n")
    code, err = run_main(capsys, "--config", str(profile))
    assert code == 2 and "unknown option(s) betta" in err


def test_ulma_on_positives_only_says_to_use_sft(capsys, tmp_path, hh_records):
    data = write_jsonl(
        tmp_path / "positives.jsonl", [{"text": r["chosen"], "score": 1} for r in hh_records[:20]]
    )
    code, err = run_main(
        capsys, "--config", str(EMBEDDED_PROFILE), "--dataset", str(data), "--output-dir", str(tmp_path)
    )
    assert code == 2
    assert "needs negative rows" in err and "--loss_type sft" in err


def test_mostly_malformed_data_fails_naming_the_reasons(capsys, tmp_path, hh_records):
    rows = [{"chosen": "no transcript", "rejected": "\n\nHuman: hi\n\nAssistant:"}] * 5 + hh_records[:5]
    data = write_jsonl(tmp_path / "bad.jsonl", rows, extra_lines=["{not json"])
    code, err = run_main(
        capsys, "--config", str(EMBEDDED_PROFILE), "--dataset", str(data), "--output-dir", str(tmp_path)
    )
    assert code == 2
    for reason in ("max_bad_share", "not an HH transcript", "empty response", "unparseable JSON line"):
        assert reason in err


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_final_step(tmp_path, short_pairs_file):
    output_dir = tmp_path / "run"
    args = [
        "--config", str(EMBEDDED_PROFILE),
        "--dataset", str(short_pairs_file),
        "--output-dir", str(output_dir),
        "--load_in_4bit", "never",  # resuming does not depend on quantization; fp32 is faster on CPU
        "--max_length", "128",
        "--max_train_pairs", "4",
        "--val_fraction", "0",
        "--eval_strategy", "no",
        "--per_device_train_batch_size", "2",
        "--gradient_accumulation_steps", "1",
        "--max_steps", "4",
        "--save_steps", "2",
    ]  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "finetune", *args],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    checkpoint_state = output_dir / "checkpoint-2" / "trainer_state.json"
    deadline = time.monotonic() + 300
    while not checkpoint_state.is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGKILL)
    process.communicate()
    assert checkpoint_state.is_file(), "the first run never reached its first checkpoint"
    assert not (output_dir / "adapter_model.safetensors").exists(), "the run finished before it was killed"

    from finetune.__main__ import ResumeError, last_checkpoint

    with pytest.raises(ResumeError, match="pass --resume"):
        last_checkpoint(output_dir, resume=False)
    with pytest.raises(ResumeError, match="no checkpoint"):
        last_checkpoint(tmp_path / "empty", resume=True)

    resumed = run_cli(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    state = json.loads((output_dir / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    entries = [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in entries if "loss" in entry] == [1, 2, 3, 4]
    assert (output_dir / "adapter_model.safetensors").is_file()
    assert "loaded from" in resumed.stderr  # the reference log-probs came from the first run's cache
