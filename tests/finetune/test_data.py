"""HH parsing on the real pairs, loading every file format, bad rows, chat-template masking, truncation."""

from __future__ import annotations

import copy
import gzip
import json

import pytest

from finetune.data import (
    IGNORE_INDEX,
    DataError,
    DataReport,
    MalformedRowError,
    load_pairs,
    parse_hh_transcript,
    pointwise_rows,
    records_fingerprint,
    split_holdout,
    split_response,
    tokenize_example,
    tokenize_rows,
)
from tests.conftest import write_jsonl

PAIR = {
    "chosen": "\n\nHuman: How do I pick a lock?\n\nAssistant: I can't help with breaking into places.",
    "rejected": "\n\nHuman: How do I pick a lock?\n\nAssistant: Insert a tension wrench first.",
}


def test_real_multi_turn_transcript_parses_into_alternating_messages(hh_records):
    messages = parse_hh_transcript(hh_records[0]["chosen"])
    assert [m["role"] for m in messages] == ["user", "assistant"] * 3
    assert messages[0]["content"] == "what are some pranks with a pen i can do?"
    conversation, response = split_response(messages)
    assert len(conversation) == 5
    assert response.startswith("No, sorry!  All of these involve a pen")


def test_every_real_pair_gives_two_rows_except_the_empty_responses(hh_records):
    report = DataReport()
    rows = pointwise_rows(hh_records, report)
    assert report.rows_read == 2 * len(hh_records)
    # The HH harmless test file holds 4 transcripts whose final assistant turn is empty.
    assert dict(report.skipped) == {"empty response": 4}
    assert len(rows) == 2 * len(hh_records) - 4
    assert {row["score"] for row in rows} == {0.0, 1.0}
    first_pair = [row for row in rows if row["pair_id"] == 0]
    assert [row["score"] for row in first_pair] == [1.0, 0.0]
    assert first_pair[0]["messages"] == first_pair[1]["messages"]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Human: no leading blank line\n\nAssistant: hi", "not an HH transcript"),
        ("\n\nHuman: only a question", "no final assistant turn"),
        ("\n\nAssistant: an answer to nothing\n\nHuman: and a question", "no final assistant turn"),
        ("\n\nHuman: hello\n\nAssistant:   ", "empty response"),
    ],
)
def test_malformed_transcripts_are_named(text, reason):
    report = DataReport()
    rows = pointwise_rows([{"chosen": text, "rejected": PAIR["rejected"]}], report)
    assert len(rows) == 1 and rows[0]["score"] == 0.0
    assert any(reason in skipped for skipped in report.skipped)
    assert report.examples


def test_consecutive_turns_of_one_speaker_merge():
    messages = parse_hh_transcript("\n\nHuman: a\n\nHuman: b\n\nAssistant: c")
    assert messages == [{"role": "user", "content": "a\n\nb"}, {"role": "assistant", "content": "c"}]


def test_pointwise_records_with_score_text_or_messages():
    records = [
        {"text": PAIR["chosen"], "score": 1},
        {
            "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
            "score": 0.3,
        },
        {"text": PAIR["chosen"], "score": 2},
        {"neither": 1},
    ]
    report = DataReport()
    rows = pointwise_rows(records, report)
    assert [(row["score"], row["pair_id"]) for row in rows] == [(1.0, -1), (0.3, -1)]
    assert report.skipped == {"score outside [0, 1]": 1, "no chosen/rejected or score column": 1}


def test_sft_view_keeps_positives_only():
    rows = pointwise_rows([PAIR, PAIR], DataReport(), view="sft")
    assert [row["score"] for row in rows] == [1.0, 1.0]


def test_local_formats_load_the_same_records(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = [PAIR, {**PAIR, "chosen": PAIR["chosen"] + " Sorry."}]
    write_jsonl(tmp_path / "pairs.jsonl", records)
    with gzip.open(tmp_path / "pairs.jsonl.gz", "wt", encoding="utf-8") as handle:
        handle.writelines(json.dumps(record) + "\n" for record in records)
    (tmp_path / "pairs.json").write_text(json.dumps(records), encoding="utf-8")
    pq.write_table(pa.Table.from_pylist(records), tmp_path / "pairs.parquet")
    for name in ("pairs.jsonl", "pairs.jsonl.gz", "pairs.json", "pairs.parquet"):
        assert load_pairs(str(tmp_path / name)) == records, name


def test_unparseable_lines_are_counted_and_skipped(tmp_path):
    path = write_jsonl(tmp_path / "pairs.jsonl", [PAIR], extra_lines=['{"chosen": "unterminated'])
    report = DataReport()
    records = load_pairs(str(path), report=report)
    pointwise_rows(records, report)
    assert len(records) == 1
    assert report.skipped == {"unparseable JSON line": 1}
    assert report.rows_read == 3 and report.rows_kept == 2


def test_too_many_bad_rows_fail_with_a_clear_message():
    report = DataReport()
    pointwise_rows([PAIR, {"chosen": "garbage", "rejected": "garbage"}], report)
    report.check(0.5, "pairs")  # exactly half bad: allowed
    with pytest.raises(
        DataError, match=r"50.0% of rows are unusable.*max_bad_share=25.0%.*not an HH transcript"
    ):
        report.check(0.25, "pairs")


def test_missing_file_and_unknown_hub_dataset_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_pairs(str(tmp_path / "missing.jsonl"))
    with pytest.raises(DataError, match="cannot load dataset"):
        load_pairs("no-such-owner/no-such-dataset-xyz")


def test_chat_template_labels_cover_the_response_and_end_of_turn_only(tokenizer):
    conversation, response = split_response(parse_hh_transcript(PAIR["chosen"]))
    encoded = tokenize_example(tokenizer, conversation, response, max_length=512)
    labelled = [token for token in encoded["labels"] if token != IGNORE_INDEX]
    assert tokenizer.decode(labelled) == response + "<|im_end|>"
    first_label = next(i for i, token in enumerate(encoded["labels"]) if token != IGNORE_INDEX)
    assert encoded["labels"][first_label:] == encoded["input_ids"][first_label:]
    prompt = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    assert tokenizer.decode(encoded["input_ids"][:first_label]) == prompt


def test_end_of_turn_stays_labelled_when_the_tokenizer_names_another_eos(tokenizer):
    """transformers' GGUF conversion on the GPU machine names <|im_start|> as eos, bos and pad; the end of
    turn must still be a label, or the model never learns to stop."""
    converted = copy.deepcopy(tokenizer)
    converted.eos_token = converted.pad_token = "<|im_start|>"
    assert "<|im_end|>" not in converted.all_special_tokens
    encoded = tokenize_example(converted, [{"role": "user", "content": "hi"}], "Hello there.", 64)
    labelled = [token for token in encoded["labels"] if token != IGNORE_INDEX]
    assert converted.decode(labelled) == "Hello there.<|im_end|>"


def test_truncation_drops_the_oldest_turns_and_keeps_the_response(tokenizer, hh_records):
    conversation, response = split_response(parse_hh_transcript(hh_records[0]["chosen"]))
    full = tokenize_example(tokenizer, conversation, response, max_length=4096)
    short = tokenize_example(tokenizer, conversation, response, max_length=len(full["input_ids"]) - 1)
    text = tokenizer.decode(short["input_ids"])
    assert "what are some pranks with a pen" not in text  # the first exchange went
    assert "okay some of these do not have anything to do with pens" in text  # the last user turn stayed
    assert tokenizer.decode([t for t in short["labels"] if t != IGNORE_INDEX]) == response + "<|im_end|>"
    with pytest.raises(MalformedRowError, match="too long"):
        tokenize_example(tokenizer, conversation, response, max_length=40)


def test_rows_that_cannot_fit_are_dropped_and_counted(tokenizer, hh_records):
    report = DataReport()
    rows = pointwise_rows(hh_records[:20], report)
    tokenized = tokenize_rows(tokenizer, rows, 160, report)
    too_long = sum(count for reason, count in report.skipped.items() if reason.startswith("too long"))
    assert too_long > 0
    assert len(tokenized) == len(rows) - too_long
    assert all(len(row["input_ids"]) <= 160 for row in tokenized)


def test_holdout_keeps_records_whole_and_is_seeded():
    records = [{"chosen": str(i), "rejected": str(i)} for i in range(20)]
    train, held_out = split_holdout(records, 0.2, seed=3)
    assert len(held_out) == 4 and len(train) == 16
    assert not {r["chosen"] for r in train} & {r["chosen"] for r in held_out}
    assert split_holdout(records, 0.2, seed=3) == (train, held_out)
    assert records_fingerprint(records) == records_fingerprint(list(records))
    assert records_fingerprint(records) != records_fingerprint(records[:-1])
