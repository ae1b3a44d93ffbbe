"""Every `python -m` command of the project keeps one convention (configs/cli.py), and the README's work.

`--help` answers with exit status 0 and lists --config and --debug; a missing settings file is one line on
stderr and exit status 2, with no traceback.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# Each command with the arguments it requires besides --config.
COMMANDS: dict[str, list[str]] = {
    "api": [],
    "ingest": ["README.md"],
    "finetune": [],
    "finetune.export": ["--out", "var/none"],
    "lab.alignment.data": [],
    "lab.alignment.sweep": ["--set", "beta=0.1", "--harmful", "h.json", "--benign", "b.json", "--out", "var/none"],
    "lab.alignment.evaluate": [],
    "lab.alignment.sets": [],
    "lab.alignment.service_refusals": ["--answers", "answers.jsonl"],
    "lab.guard.train": ["--tuned", "missing-folder"],
    "lab.guard.add_folds": ["--report", "missing-report.json"],
    "lab.guard.tuned_from_weights": ["--weights-bundle", "missing-bundle.json.xz"],
    "lab.guard.evaluate": [],
    "lab.guard.generate_answers": [],
    "lab.guard.tuning_bundle": [],
    "lab.agent.evaluate": [],
    "benchmarks.api_load": [],
    "benchmarks.guard_runtime": [],
}
# Benchmarks and the GPU-side guard tuning take no settings profile; they are checked for --help only.
HELP_ONLY = [
    "lab.guard.tune_encoder", "lab.alignment.seeds",
    "benchmarks.train_throughput", "benchmarks.retrieval", "benchmarks.retrieval_quality", "benchmarks.evidence_selection",
    "benchmarks.generate_throughput", "benchmarks.engine_agreement", "benchmarks.vllm_agreement",
    "benchmarks.export_quality",
    "benchmarks.production_recipe",
    "benchmarks.engine_settings", "benchmarks.service_overhead", "benchmarks.paced_server",
]

# Flags a command's --help must list besides the convention's own (its documented interface).
HELP_FLAGS: dict[str, list[str]] = {
    "lab.alignment.data": ["--holdout-fraction", "--seed", "--harmless-n", "--exclude", "--out"],
    "lab.alignment.evaluate": ["--base", "--adapter", "--pairs", "--harmful", "--benign", "--out", "--results-json",
                               "--limit", "--max-new-tokens", "--batch-size", "--train-data"],
}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120, check=False)


def test_every_command_in_the_readmes_is_covered() -> None:
    documented = set()
    for readme in [REPO_ROOT / "README.md", *REPO_ROOT.glob("*/README.md"), *REPO_ROOT.glob("*/*/README.md")]:
        documented |= set(re.findall(r"python -m ([a-z_][a-z_.]*[a-z_])", readme.read_text(encoding="utf-8")))
    assert documented - set(COMMANDS) - set(HELP_ONLY) == set()


@pytest.mark.slow
@pytest.mark.parametrize("module", [*COMMANDS, *HELP_ONLY])
def test_help(module: str) -> None:
    result = run(module, "--help")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage:" in result.stdout.lower()
    if module in COMMANDS:
        assert "--config" in result.stdout and "--debug" in result.stdout
    assert [flag for flag in HELP_FLAGS.get(module, []) if flag not in result.stdout] == []


@pytest.mark.slow
@pytest.mark.parametrize("module", list(COMMANDS))
def test_a_missing_settings_file_is_one_line_and_status_2(module: str, tmp_path: Path) -> None:
    result = run(module, "--config", str(tmp_path / "missing.yaml"), *COMMANDS[module])
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1 and "missing.yaml" in lines[0]
    assert "Traceback" not in result.stderr
