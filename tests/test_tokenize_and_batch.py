"""The trained vocabulary (and its cache) and length-grouped, dynamically padded batches."""

from __future__ import annotations

import numpy as np
import torch

from harness import vocab
from harness.batching import collate, encode, eval_batches, train_batches
from harness.config import TrainingSettings
from harness.tasks.data import load_task_data
from harness.tasks.registry import builtin_task
from harness.vocab import VocabSettings, vocab_tokenizer


def _data(name: str, data_dir, n: int = 1000):
    task = builtin_task(name)
    return load_task_data(task, TrainingSettings(max_train_examples=n, max_eval_examples=200), str(data_dir))


def test_vocabulary_is_trained_once_then_cached(data_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path))
    train = _data("sst2", data_dir).train
    settings = VocabSettings(vocab_size=2000)
    calls = []
    real_train = vocab._train
    monkeypatch.setattr(vocab, "_train", lambda *a: calls.append(1) or real_train(*a))
    first = vocab_tokenizer(train.texts(), train.fingerprint(), settings)
    second = vocab_tokenizer(train.texts(), train.fingerprint(), settings)
    assert calls == [1]  # the second run loaded the file
    assert first.get_vocab() == second.get_vocab()
    assert 1000 < len(first) <= 2000
    vocab_tokenizer(train.texts(), train.fingerprint(), VocabSettings(vocab_size=1500))
    assert calls == [1, 1]  # other settings, another vocabulary


def test_pairs_get_separator_and_segment_ids(data_dir):
    data = _data("mrpc", data_dir, 200)
    tokenizer = vocab_tokenizer(data.train.texts(), data.train.fingerprint(), VocabSettings(vocab_size=1000))
    encoded = encode(tokenizer, data.train, max_length=64)
    ids, types = encoded.row(0), encoded.row_types(0)
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    assert ids[0] == cls and ids[-1] == sep and ids.count(sep) == 2
    boundary = ids.index(sep)
    assert set(types[: boundary + 1]) == {0} and set(types[boundary + 1 :]) == {1}
    assert max(encoded.lengths) <= 64


def test_length_grouping_covers_every_row_once_and_cuts_padding(data_dir):
    data = _data("sst2", data_dir, 2000)
    tokenizer = vocab_tokenizer(data.train.texts(), data.train.fingerprint(), VocabSettings(vocab_size=3000))
    encoded = encode(tokenizer, data.train, max_length=128)
    lengths = encoded.lengths
    batches = train_batches(lengths, 32, np.random.default_rng(0))
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(encoded)))
    padded_grouped = sum(len(b) * lengths[b].max() for b in batches)
    shuffled = np.random.default_rng(0).permutation(len(lengths))
    padded_random = sum(32 * lengths[shuffled[i : i + 32]].max() for i in range(0, len(lengths), 32))
    assert padded_grouped < 0.75 * padded_random
    # a different seed gives another order
    assert not np.array_equal(
        np.concatenate(batches),
        np.concatenate(train_batches(lengths, 32, np.random.default_rng(1))),
    )


def test_collate_pads_to_the_longest_row(data_dir):
    data = _data("sst2", data_dir, 300)
    tokenizer = vocab_tokenizer(data.train.texts(), data.train.fingerprint(), VocabSettings(vocab_size=1000))
    encoded = encode(tokenizer, data.train, max_length=128)
    batch_rows = eval_batches(encoded.lengths, 16)[-1]
    batch = collate(encoded, batch_rows)
    width = encoded.lengths[batch_rows].max()
    assert batch["input_ids"].shape == (len(batch_rows), width)
    assert batch["attention_mask"].sum(1).tolist() == encoded.lengths[batch_rows].tolist()
    assert (batch["input_ids"][batch["attention_mask"] == 0] == tokenizer.pad_token_id).all()


def test_packed_rows_collate_and_subset_as_the_tokenizer_wrote_them(data_dir):
    data = _data("mrpc", data_dir, 200)
    tokenizer = vocab_tokenizer(data.train.texts(), data.train.fingerprint(), VocabSettings(vocab_size=1000))
    encoded = encode(tokenizer, data.train, max_length=48)
    out = tokenizer(data.train.text_a, data.train.text_b, truncation=True, max_length=48)
    rows = np.array([7, 3, 150, 0, 42])
    batch = collate(encoded, rows)
    for r, i in enumerate(rows):
        n = len(out["input_ids"][i])
        assert batch["input_ids"][r, :n].tolist() == out["input_ids"][i]
        assert batch["token_type_ids"][r, :n].tolist() == out["token_type_ids"][i]
        assert batch["attention_mask"][r].sum() == n
        assert (batch["token_type_ids"][r, n:] == 0).all()
    part = encoded.subset(rows)
    assert [part.row(r) for r in range(len(rows))] == [out["input_ids"][i] for i in rows]
    assert [part.row_types(r) for r in range(len(rows))] == [out["token_type_ids"][i] for i in rows]
    assert part.labels.tolist() == encoded.labels[rows].tolist()


def test_imdb_line_breaks_are_not_tokens_and_left_truncation_keeps_the_end(data_dir):
    data = _data("imdb", data_dir, 300)
    rows = data.train.take(np.arange(50))
    with_breaks = [i for i, text in enumerate(rows.text_a) if "<br />" in text]
    assert with_breaks, "IMDb reviews carry <br /> line breaks"
    tokenizer = vocab_tokenizer(data.train.texts(), data.train.fingerprint(), VocabSettings(vocab_size=3000))
    full = encode(tokenizer, rows, max_length=4096)
    for i in with_breaks:
        tokens = " ".join(tokenizer.convert_ids_to_tokens(full.row(i)))
        assert "< br / >" not in tokens and "br /" not in tokens
    kept_end = encode(tokenizer, rows, max_length=64, truncation_side="left")
    kept_start = encode(tokenizer, rows, max_length=64, truncation_side="right")
    long_rows = [i for i in range(len(rows)) if full.lengths[i] > 64]
    assert long_rows
    for i in long_rows:
        body = full.row(i)[1:-1]  # without [CLS] ... [SEP]
        assert kept_end.row(i)[1:-1] == body[-62:]
        assert kept_start.row(i)[1:-1] == body[:62]


def test_encoding_in_chunks_equals_encoding_at_once(data_dir, monkeypatch):
    """Rows are tokenized `ENCODE_CHUNK` at a time (the tokenizer's per-row objects for a whole
    split once held 1.3 GB): chunk boundaries change nothing, pairs keep their segment ids and a
    single text stores none."""
    from harness import batching

    for task, rows in (("mrpc", 101), ("sst2", 203)):
        data = _data(task, data_dir, rows)
        texts = data.train.texts()
        tokenizer = vocab_tokenizer(texts, data.train.fingerprint(), VocabSettings(vocab_size=1000))
        whole = encode(tokenizer, data.train, max_length=48)
        monkeypatch.setattr(batching, "ENCODE_CHUNK", 10)
        chunked = encode(tokenizer, data.train, max_length=48)
        monkeypatch.undo()
        assert len(chunked) == len(whole) == rows
        assert chunked.ids.dtype == np.int32
        for got, want in ((chunked.ids, whole.ids), (chunked.offsets, whole.offsets)):
            np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(chunked.labels, data.train.labels)
        if task == "mrpc":
            np.testing.assert_array_equal(chunked.token_types, whole.token_types)
            assert set(np.unique(chunked.token_types)) == {0, 1}
        else:
            assert chunked.token_types is None
        batch = collate(chunked, np.arange(5))
        assert batch["input_ids"].dtype == batch["token_type_ids"].dtype == torch.int64
        assert batch["input_ids"][0, : chunked.lengths[0]].tolist() == chunked.row(0)
