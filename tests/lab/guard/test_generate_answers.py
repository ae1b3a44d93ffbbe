"""Answering a few prompt sets again keeps the earlier answers of the others (the model itself is not run here:
its generation is the service's, tested under tests/finetune)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.guard import generate_answers
from lab.guard.training_data import SafetyDataError


def write_rows(path: Path, rows: list[dict], extra_lines: tuple[str, ...] = ()) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows) + "".join(line + "\n" for line in extra_lines),
                    encoding="utf-8")


def test_only_the_named_sets_are_answered_again(tmp_path: Path, monkeypatch, capsys):
    output = tmp_path / "answers.jsonl"
    earlier = [{"prompt_set": "harmful_train", "harmful_request": True, "categories": ["S9"], "request": "r1",
                "answer": "a1", "generator": "g"},
               {"prompt_set": "lookalikes_val", "harmful_request": False, "categories": [], "request": "old",
                "answer": "stale", "generator": "g"}]
    gone = {"prompt_set": "a_set_no_longer_built", "harmful_request": False, "request": "r", "answer": "a"}
    write_rows(output, [*earlier, gone], extra_lines=("{not json",))
    asked: list[str] = []

    def answer(prompts, settings, batch_size, max_new_tokens):
        asked.extend(prompts)
        return [f"answer to {p}" for p in prompts]

    monkeypatch.setattr(generate_answers, "generate", answer)
    args = generate_answers.build_parser().parse_args(
        ["--prompt-sets", "lookalikes_val", "lookalikes_val", "--output", str(output)])  # named twice, answered once
    assert generate_answers.main(args) == 0
    rows = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    # The other set's row, unchanged; the malformed line, the unknown set's row and the stale answer are gone.
    assert rows[0] == earlier[0]
    assert not output.with_name(output.name + ".partial").exists()
    fresh = rows[1:]
    assert len(fresh) == len(asked) > 300 and {r["prompt_set"] for r in fresh} == {"lookalikes_val"}
    assert all(not r["harmful_request"] and r["answer"] == f"answer to {r['request']}" for r in fresh)
    assert "kept 1" in capsys.readouterr().out


def test_an_unknown_prompt_set_is_a_clear_error(tmp_path: Path):
    args = generate_answers.build_parser().parse_args(["--prompt-sets", "nope", "--output", str(tmp_path / "a.jsonl")])
    with pytest.raises(SafetyDataError, match="unknown prompt sets"):
        generate_answers.main(args)
