"""CUDA graphs for the MiniLM encoders: batches padded to a bucket give the hidden states of the batch as it came
(checked on the CPU through the torch model), and on a CUDA GPU the replayed graphs give what the eager forward
gives."""

from __future__ import annotations

import numpy as np
import pytest

from configs.settings import EmbeddingSettings
from retrieval.cuda_graphs import MAX_ROWS, MAX_TOKENS, TOKEN_STEP, bucket, padded
from retrieval.embeddings import load_sentence_model

TEXTS = ["How do I page an Incident Commander from Slack?", "SEV-1 or SEV-2?", "ünïcode wörds",
         " ".join(["The incident commander coordinates the response and keeps the timeline."] * 8)]


def test_buckets_round_rows_to_powers_of_two_and_tokens_to_the_step() -> None:
    assert bucket(1, 1) == (1, TOKEN_STEP)
    assert bucket(3, TOKEN_STEP) == (4, TOKEN_STEP)
    assert bucket(5, TOKEN_STEP + 1) == (8, 2 * TOKEN_STEP)
    assert bucket(MAX_ROWS, MAX_TOKENS) == (MAX_ROWS, MAX_TOKENS)
    assert bucket(MAX_ROWS + 1, 8) is None and bucket(1, MAX_TOKENS + 1) is None


def test_padding_masks_the_new_tokens_and_keeps_one_token_of_each_new_row() -> None:
    batch = {"input_ids": np.array([[101, 7, 102], [101, 102, 0]]), "attention_mask": np.array([[1, 1, 1], [1, 1, 0]]),
             "token_type_ids": np.zeros((2, 3), dtype=np.int64)}
    out = padded(batch, (4, 8))
    assert {name: values.shape for name, values in out.items()} == dict.fromkeys(batch, (4, 8))
    for name, values in batch.items():
        assert np.array_equal(out[name][:2, :3], values)
    assert not out["attention_mask"][:2, 3:].any() and not out["input_ids"][:, 3:].any()
    assert np.array_equal(out["attention_mask"][2:], [[1] + [0] * 7] * 2)


@pytest.fixture(scope="module")
def minilm():
    return load_sentence_model(EmbeddingSettings().name_or_path)


@pytest.mark.slow
def test_a_padded_batch_gives_the_hidden_states_of_the_batch_as_it_came(minilm) -> None:
    import torch

    model = minilm[0].auto_model.eval()
    batch = minilm.tokenizer(TEXTS[1:], padding=True, return_tensors="np")  # 3 rows: a padded row too
    rows, tokens = batch["input_ids"].shape

    def forward(inputs: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            return model(**{name: torch.as_tensor(v) for name, v in inputs.items()}).last_hidden_state.numpy()

    shape = bucket(rows, tokens)
    assert shape[0] > rows and shape[1] > tokens  # both paddings are exercised
    np.testing.assert_allclose(forward(padded(batch, shape))[:rows, :tokens], forward(batch), atol=1e-5)


@pytest.mark.skipif("not __import__('torch').cuda.is_available()", reason="CUDA graphs need a CUDA GPU")
def test_replayed_graphs_give_what_the_eager_forward_gives_on_the_gpu(minilm) -> None:
    import threading

    from retrieval.cuda_graphs import GraphedEncoder
    from retrieval.hidden_states import HiddenStates

    model = minilm[0].auto_model.to("cuda").eval()
    eager, graphed = HiddenStates(model), GraphedEncoder(model)
    batches = [minilm.tokenizer(texts, padding=True, return_tensors="np")
               for texts in (TEXTS, TEXTS[:1], TEXTS[1:3], TEXTS * 9)]  # the last is larger than any graph
    for batch in batches * 2:  # the second time replays the graphs captured the first
        np.testing.assert_allclose(graphed(batch), eager(batch), atol=1e-4)
    assert len(graphed.graphs) == 3
    results: list[tuple[dict[str, np.ndarray], np.ndarray]] = []
    threads = [threading.Thread(target=lambda b=b: results.append((b, graphed(b)))) for b in batches[:3] * 4]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == len(threads)  # a thread that raised appended nothing
    for batch, hidden in results:
        np.testing.assert_allclose(hidden, eager(batch), atol=1e-4)
