"""`python -m ingest` end to end, as a user runs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ingest.__main__ import main

REPO_ROOT = Path(__file__).resolve().parents[2]
SUMMARY = re.compile(
    r"^(\d+) files?: \d+ ingested, \d+ unchanged, \d+ removed; "
    r"chunks: (\d+) added, (\d+) already present, \d+ removed; (\d+) skipped(: .*)?$"
)


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False"}
    return subprocess.run(
        [sys.executable, "-m", "ingest", *map(str, args)],
        check=False, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )


def test_help_lists_every_flag() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for flag in ("--config", "--collection", "--persist-dir", "--server-url", "--debug", "--prune", "--delete",
                 "--reset", ".pdf", ".docx", ".jsonl"):
        assert flag in result.stdout


def test_missing_path_is_a_usage_error_in_one_line(tmp_path: Path) -> None:
    result = run_cli(tmp_path / "missing", "--persist-dir", tmp_path / "db")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: no such file or directory: {tmp_path / 'missing'}"
    ]


def test_bad_config_is_a_usage_error(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("ingest:\n  chunk_size: 10\n")
    result = run_cli(tmp_path, "--config", config)
    assert result.returncode == 2
    assert "ingest.chunk_size" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_ingests_a_folder_and_prints_the_summary(sample_docs: Path, tmp_path: Path, capsys) -> None:
    (sample_docs / "broken.pdf").write_bytes(b"not a pdf at all")
    (sample_docs / "data.xyz").write_text("?")
    db = tmp_path / "db"

    result = run_cli(sample_docs, "--persist-dir", db, "--collection", "cli_kb")

    assert result.returncode == 4, result.stderr  # done, but some files were skipped
    summary = result.stdout.strip()
    assert SUMMARY.match(summary).groups()[:4] == ("6", "5", "0", "2")
    assert "broken.pdf (not a valid PDF)" in summary and "data.xyz (unsupported type)" in summary
    assert "Traceback" not in result.stderr

    # Re-run in-process (the embedding model is already loaded here) against the same store.
    assert main([str(sample_docs), "--persist-dir", str(db), "--collection", "cli_kb"]) == 4
    assert SUMMARY.match(capsys.readouterr().out.strip()).groups()[:4] == ("6", "0", "5", "2")

    # Without the unusable files every file is in sync: status 0.
    (sample_docs / "broken.pdf").unlink()
    (sample_docs / "data.xyz").unlink()
    assert main([str(sample_docs), "--persist-dir", str(db), "--collection", "cli_kb"]) == 0
    assert SUMMARY.match(capsys.readouterr().out.strip()).groups()[:4] == ("4", "0", "5", "0")


def test_exit_status_3_when_every_file_fails(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "broken.pdf").write_bytes(b"garbage")
    (tmp_path / "in" / "empty.txt").write_text("")
    result = run_cli(tmp_path / "in", "--persist-dir", tmp_path / "db")
    assert result.returncode == 3
    assert SUMMARY.match(result.stdout.strip()).groups()[:4] == ("2", "0", "0", "2")
