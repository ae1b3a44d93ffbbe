"""The guard's training mix and its validation sets: the older shared sets (lab.guard.training_data), the
safety-extra sources as lab/guard/mix.yaml assigns them (lab.guard.sources), and the technical questions.

Validation sets are named by what they hold: the older test parts keep their names, safety-extra ones are
"<source>/<file>" (their validation rows; for a file that also trains, the half that chose no threshold,
and "<source>/<file>:calibration" the half that did), the technical questions "technical_questions". A validation
row whose normalised text is also a training row is dropped (logged), so no number is measured on a row
that was trained on; tests/lab/guard checks it by hash.
"""

from __future__ import annotations

import logging

from lab.guard.sources import (
    ExtraSplits,
    Mix,
    SourceRow,
    calibrates,
    extra_splits,
    read_extra,
    technical_questions,
)
from lab.guard.training_data import Example, SafetyData, SplitSizes, normalize

logger = logging.getLogger(__name__)

TECHNICAL = "technical_questions"
CALIBRATION_SUFFIX = ":calibration"
# The policy model's answers to the look-alike requests, by the side of the mix their request is on.
LOOKALIKES_TRAIN, LOOKALIKES_CALIBRATION, LOOKALIKES_VAL = "lookalikes_train", "lookalikes_calibration", "lookalikes_val"
LOOKALIKE_ANSWERS = "lookalike_answers"
# Training prompts answered by the policy model as served (with the shipped adapter). The older answers come from
# the bare embedded model and the look-alike answers from the served one: without these, the answer stage could
# tell safe from unsafe by which model wrote the answer. The adapter refuses almost all of harmful_train (it
# trained on it), so CatQA's harmful questions (training rows of the request mix) give its compliant answers.
SERVED_PREFIX = "served_"
SERVED_SETS = ("harmful_train", "harmless_train")
SERVED_CATQA = SERVED_PREFIX + "catqa_train"


def _request_rows(rows: list[SourceRow], without: str | None = None) -> list[Example]:
    return [r.example for r in rows if r.stage == "request" and r.source != without]


def _by_file(rows: list[SourceRow], stage: str, mix: Mix) -> dict[str, list[Example]]:
    sets: dict[str, list[Example]] = {}
    for row in rows:
        if row.stage == stage:
            name = row.file + CALIBRATION_SUFFIX if calibrates(row, mix) else row.file
            sets.setdefault(name, []).append(row.example)
    return sets


def held_out(sets: dict[str, list[Example]], training: list[Example], key=lambda e: e.request) -> dict[str, list[Example]]:
    """`sets` minus every row whose normalised text (request, or `key`) is a training row."""
    seen = {normalize(key(e)) for e in training}
    kept = {}
    for name, rows in sets.items():
        kept[name] = [e for e in rows if normalize(key(e)) not in seen]
        if len(kept[name]) < len(rows):
            logger.info("%s: %d rows also in training, left out of validation", name, len(rows) - len(kept[name]))
    return kept


def lookalike_prompt_sets(splits: ExtraSplits, mix: Mix) -> dict[str, list[Example]]:
    """The safe requests of the safety-extra files that also train (HateCheck's non-hateful tests, CoCoNot,
    CyberSecEval's benign requests, Do-Not-Answer's relabelled-safe rows), by their side of the request mix.

    The policy model's answers to them are safe answers to what only sounds harmful: without them the answer
    stage learnt that an answer about killing a process or a gas leak is unsafe, and the output check withheld
    it. Their answers train the answer stage on the training side, calibrate its threshold on the calibration
    half and are measured on the other half, as the requests are.
    """
    sets: dict[str, list[Example]] = {LOOKALIKES_TRAIN: [], LOOKALIKES_CALIBRATION: [], LOOKALIKES_VAL: []}
    for rows, validation in ((splits.train, False), (splits.validation, True)):
        for row in rows:
            if row.stage != "request" or row.example.unsafe or mix.files[row.file] not in ("split", "scope"):
                continue
            name = LOOKALIKES_TRAIN if not validation else LOOKALIKES_CALIBRATION if calibrates(row, mix) else LOOKALIKES_VAL
            sets[name].append(row.example)
    return sets


def answer_prompt_sets(data: SafetyData, mix: Mix, sizes: SplitSizes) -> dict[str, list[Example]]:
    """Every request the policy model answers for the answer stage (python -m lab.guard.generate_answers)."""
    older = data.answer_prompt_sets(sizes.answers_per_benign_set)
    splits = extra_splits(data.data_dir, mix)
    catqa = [row.example for row in splits.train if row.source == "catqa" and row.stage == "request"]
    return (older | {SERVED_PREFIX + name: older[name] for name in SERVED_SETS} | {SERVED_CATQA: catqa}
            | lookalike_prompt_sets(splits, mix))


def after_plain_questions(answers: list[Example], questions: list[Example]) -> list[Example]:
    """Each unsafe answer again after a plain question, still unsafe: a harmful answer is harmful whatever was
    asked, so the answer stage cannot learn to clear an answer from its request alone (the look-alike
    answers above are all safe and all follow requests that sound harmful)."""
    unsafe = [e for e in answers if e.unsafe] if questions else []
    return [Example(questions[i % len(questions)].request, True, e.categories, f"{e.source}+after_plain", e.answer)
            for i, e in enumerate(unsafe)]


def request_training_set(data: SafetyData, mix: Mix, sizes: SplitSizes, without: str | None = None) -> list[Example]:
    """The request mix; `without` leaves one safety-extra source out entirely (leave-one-source-out)."""
    return (
        data.harmful("harmful_train")
        + data.harmless("harmless_train", sizes.harmless_train)
        + data.toxigen("train")
        + data.group_questions()
        + data.hh_first_turns("train")
        + data.written_requests("train")
        + technical_questions(mix, "train")
        + _request_rows(extra_splits(data.data_dir, mix).train, without)
    )


def request_validation_sets(data: SafetyData, mix: Mix, sizes: SplitSizes) -> dict[str, list[Example]]:
    toxigen = data.toxigen("test")
    written = data.written_requests("test")
    hh = data.hh_first_turns("test")
    sets = {
        "harmful_val": data.harmful("harmful_val"),
        "advbench_deduplicated": data.advbench(),
        "harmless_val_sample": data.harmless("harmless_val", sizes.harmless_test),
        "toxigen_test_hate": [e for e in toxigen if e.unsafe],
        "toxigen_test_neutral": [e for e in toxigen if not e.unsafe],
        "hh_rlhf_test_unsafe": [e for e in hh if e.unsafe],
        "hh_rlhf_test_benign": [e for e in hh if not e.unsafe],
        "written_test_unsafe": [e for e in written if e.unsafe],
        "written_test_lookalikes": [e for e in written if not e.unsafe],
        TECHNICAL: technical_questions(mix, "val"),
        **_by_file(extra_splits(data.data_dir, mix).validation, "request", mix),
    }
    return held_out(sets, request_training_set(data, mix, sizes))


def calibration_sets(mix: Mix, stage: str) -> list[str]:
    """The validation sets a stage's threshold is chosen on (never training data).

    Requests: the calibration half of the held-out rows of safety-extra files that also train (split/scope;
    the other half is measured on); the sources held out whole, the older test parts and the technical
    questions stay unseen. Answers: the older answer test sets and the calibration half of the answers to
    look-alike requests; DICES (the only human-labelled answer set) stays unseen.
    """
    if stage == "request":
        return [name + CALIBRATION_SUFFIX for name, use in mix.files.items() if use in ("split", "scope")]
    return ["generated_harmful_requests", "generated_harmless_val", "toxigen_test_as_answers", "written_test_answers",
            "refusals_to_harmful_test_requests", LOOKALIKE_ANSWERS + CALIBRATION_SUFFIX]


def leave_one_out_set(data: SafetyData, mix: Mix, sizes: SplitSizes, source: str) -> tuple[list[Example], list[Example]]:
    """(training mix without `source`, every request row of `source` that is not in that training mix)."""
    training = request_training_set(data, mix, sizes, without=source)
    rows = [row for name, use in mix.files.items() if use != "exclude" and name.split("/", 1)[0] == source
            for row in read_extra(data.data_dir, name)]
    return training, held_out({source: _request_rows(rows)}, training)[source]


def response_training_set(data: SafetyData, mix: Mix) -> list[Example]:
    harmful = data.harmful("harmful_train") + [e for e in data.written_requests("train") if e.unsafe]
    generated = data.generated_answers([*SERVED_SETS, *(SERVED_PREFIX + name for name in SERVED_SETS), SERVED_CATQA])
    plain = [e for e in generated if e.source.endswith("harmless_train")]
    return (
        generated
        + after_plain_questions(generated, plain)
        + data.generated_answers([LOOKALIKES_TRAIN])
        + data.toxigen_answers("train")
        + data.written_answers("train")
        + data.refused(harmful, "train")
        + [r.example for r in extra_splits(data.data_dir, mix).train if r.stage == "response"]
    )


def response_validation_sets(data: SafetyData, mix: Mix) -> dict[str, list[Example]]:
    # A degenerate answer (e.g. a run of emoji) can come out for a training and a test prompt alike: such
    # duplicates are dropped from the validation side so no validation answer was seen in training.
    generated = data.generated_answers(["harmful_val", "advbench", "harmless_val"])
    plain = [e for e in generated if e.source == "generated/harmless_val"]
    harmful_test_requests = data.harmful("harmful_val") + [e for e in data.written_requests("test") if e.unsafe]
    sets = {
        "generated_harmful_requests": [e for e in generated if e.source != "generated/harmless_val"],
        "generated_harmless_val": plain,
        "generated_harmful_after_plain": after_plain_questions(generated, plain),
        LOOKALIKE_ANSWERS: data.generated_answers([LOOKALIKES_VAL]),
        LOOKALIKE_ANSWERS + CALIBRATION_SUFFIX: data.generated_answers([LOOKALIKES_CALIBRATION]),
        "toxigen_test_as_answers": data.toxigen_answers("test"),
        "written_test_answers": data.written_answers("test"),
        **_by_file(extra_splits(data.data_dir, mix).validation, "response", mix),
    }
    kept = held_out(sets, response_training_set(data, mix), key=lambda e: e.answer or "")
    # Written refusals are their own held-out list (the same few sentences decline every request): the
    # requests they answer are held out, the refusal texts are the test part of written_answers.yaml.
    kept["refusals_to_harmful_test_requests"] = data.refused(harmful_test_requests, "test")
    return kept
