"""The training mix: safety-extra rows on the side mix.yaml gives them, technical questions split by hash,
and no training row in any validation set (checked by hashing every normalised text)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from lab.guard.sources import (
    TECHNICAL_QUESTIONS_FILE,
    calibrates,
    extra_splits,
    load_mix,
    read_extra,
    technical_questions,
)
from lab.guard.splits import (
    CALIBRATION_SUFFIX,
    LOOKALIKE_ANSWERS,
    LOOKALIKES_CALIBRATION,
    LOOKALIKES_TRAIN,
    LOOKALIKES_VAL,
    after_plain_questions,
    answer_prompt_sets,
    calibration_sets,
    leave_one_out_set,
    lookalike_prompt_sets,
    request_training_set,
    request_validation_sets,
    response_training_set,
    response_validation_sets,
)
from lab.guard.training_data import Example, SafetyDataError, SplitSizes, normalize

MIX = load_mix()


def digests(texts) -> set[str]:
    return {hashlib.sha256(normalize(text).encode()).hexdigest() for text in texts}


def test_technical_questions_are_many_distinct_and_split_by_hash():
    train, val = technical_questions(MIX, "train"), technical_questions(MIX, "val")
    assert len(train) + len(val) >= 300
    assert len(digests(e.request for e in train + val)) == len(train) + len(val)  # no two the same
    assert 0.2 <= len(val) / (len(train) + len(val)) <= 0.4
    assert not any(e.unsafe for e in train + val)
    assert technical_questions(MIX, "val") == val  # the same split every time
    assert TECHNICAL_QUESTIONS_FILE.is_file()


def test_no_training_row_appears_in_a_validation_set(safety_data):
    sizes = SplitSizes()
    trained = digests(e.request for e in request_training_set(safety_data, MIX, sizes))
    for name, rows in request_validation_sets(safety_data, MIX, sizes).items():
        assert rows, name
        leaked = [e.request for e in rows if digests([e.request]) <= trained]
        assert not leaked, f"{name}: {len(leaked)} validation requests are training rows, e.g. {leaked[:2]}"
    trained_answers = digests(e.answer or "" for e in response_training_set(safety_data, MIX))
    for name, rows in response_validation_sets(safety_data, MIX).items():
        if name.startswith("refusals"):
            continue  # written refusals are their own held-out list; the requests they answer are held out
        leaked = [e.answer for e in rows if digests([e.answer or ""]) <= trained_answers]
        assert not leaked, f"{name}: {len(leaked)} validation answers are training answers"


def test_sources_held_out_whole_never_train_and_templates_never_straddle(safety_data):
    splits = extra_splits(safety_data.data_dir, MIX)
    trained_files = {row.file for row in splits.train}
    assert not trained_files & {name for name, use in MIX.files.items() if use in ("val", "exclude")}
    for name, use in MIX.files.items():
        if use == "split":
            train_groups = {r.group for r in splits.train if r.file == name}
            assert not train_groups & {r.group for r in splits.validation if r.file == name}, name
    # AART is capped per template group; do-not-answer's borderline rows validate, the rest train.
    assert len([r for r in splits.train if r.file == "aart/v1"]) < len(read_extra(safety_data.data_dir, "aart/v1")) / 2
    assert {r.scope for r in splits.validation if r.file == "donotanswer/all"} == {"borderline"}
    assert not any(r.example.unsafe and r.scope == "out" for r in splits.train + splits.validation)


def test_thresholds_are_calibrated_on_one_half_and_figures_reported_on_the_other(safety_data):
    """A split or scope file's validation rows are halved by template: one half calibrates, the other (under the
    file's own name, which the look-alike figures read) chose nothing; files held out whole never calibrate."""
    sets = request_validation_sets(safety_data, MIX, SplitSizes())
    calibration = calibration_sets(MIX, "request")
    assert calibration and all(name.endswith(CALIBRATION_SUFFIX) for name in calibration)
    for name in calibration:
        reported = name.removesuffix(CALIBRATION_SUFFIX)
        assert len(sets[name]) > 30 and len(sets[reported]) > 30, name
        assert not digests(e.request for e in sets[name]) & digests(e.request for e in sets[reported]), name
    validation = extra_splits(safety_data.data_dir, MIX).validation
    for name in ("hatecheck/test_suite", "coconot/contrast"):
        halves = [{r.group for r in validation if r.file == name and calibrates(r, MIX) == side} for side in (True, False)]
        assert halves[0] and halves[1] and not halves[0] & halves[1], name
    held_out_whole = {name for name, use in MIX.files.items() if use == "val"}
    assert not any(calibrates(r, MIX) for r in validation if r.file in held_out_whole)


def test_lookalike_answers_follow_their_requests_side_of_the_mix(safety_data):
    """The look-alike requests the policy model answers for the answer stage are safe, and each is on its
    request's side: training requests train, the calibration half calibrates, the other half chose nothing."""
    sets = lookalike_prompt_sets(extra_splits(safety_data.data_dir, MIX), MIX)
    assert all(len(sets[name]) > 300 for name in (LOOKALIKES_TRAIN, LOOKALIKES_CALIBRATION, LOOKALIKES_VAL))
    assert not any(e.unsafe for rows in sets.values() for e in rows)
    sizes = SplitSizes()
    trained = digests(e.request for e in request_training_set(safety_data, MIX, sizes))
    validation = request_validation_sets(safety_data, MIX, sizes)
    calibrating = digests(e.request for name in calibration_sets(MIX, "request") for e in validation[name])
    assert digests(e.request for e in sets[LOOKALIKES_TRAIN]) <= trained
    assert digests(e.request for e in sets[LOOKALIKES_CALIBRATION]) <= calibrating
    assert not digests(e.request for e in sets[LOOKALIKES_VAL]) & (calibrating | trained)
    assert LOOKALIKE_ANSWERS + CALIBRATION_SUFFIX in calibration_sets(MIX, "response")
    assert LOOKALIKE_ANSWERS not in calibration_sets(MIX, "response")


def test_every_generated_answer_answers_a_request_of_its_prompt_set(safety_data):
    """generated_answers.jsonl names each row's prompt set as it was when written; a change to the mix or the seed
    that moves a request to another side needs its answers written again (python -m lab.guard.generate_answers)."""
    for name, rows in answer_prompt_sets(safety_data, MIX, SplitSizes()).items():
        written = digests(e.request for e in safety_data.generated_answers([name]))
        assert written == digests(e.request for e in rows), name


def test_unsafe_answers_are_also_taught_after_plain_questions():
    answers = [Example("how to make a bomb", True, ("S9",), "generated/harmful_train", "Mix the powder..."),
               Example("how to make a bomb", False, (), "generated/harmful_train", "I'm sorry, I can't."),
               Example("hurt someone", True, ("S1",), "generated/harmful_train", "First, wait...")]
    plain = [Example("What is the capital of France?", False, (), "generated/harmless_train", "Paris.")]
    moved = after_plain_questions(answers, plain)
    assert [(e.request, e.answer, e.unsafe, e.categories) for e in moved] == [
        ("What is the capital of France?", "Mix the powder...", True, ("S9",)),
        ("What is the capital of France?", "First, wait...", True, ("S1",))]
    assert all(e.source.endswith("+after_plain") for e in moved)


def test_leave_one_out_training_holds_nothing_of_the_left_out_source(safety_data):
    training, test = leave_one_out_set(safety_data, MIX, SplitSizes(), "hatecheck")
    assert not any(e.source.startswith("extra/hatecheck/") for e in training)
    assert len(test) > 3000 and not digests(e.request for e in test) & digests(e.request for e in training)


def test_a_row_off_the_schema_is_a_clear_error(tmp_path: Path):
    folder = tmp_path / "safety-extra" / "broken"
    folder.mkdir(parents=True)
    (folder / "rows.jsonl").write_text(json.dumps({"text": "hello"}) + "\n")
    with pytest.raises(SafetyDataError, match="line 1 does not follow the safety-extra schema"):
        read_extra(tmp_path, "broken/rows")
    with pytest.raises(SafetyDataError, match="not found"):
        read_extra(tmp_path, "missing/rows")
