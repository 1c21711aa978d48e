"""The classical baseline on real rows: the torch module computes what scikit-learn's own
pipeline computes from the same words (the same n-grams kept, the same counts, the same
probabilities), NB-SVM's ratios match a hand computation, and a suite runs it through every
consumer: one cell per task (the fit has no seed), stored probabilities, FLOPs of the sparse
product, deploy backends other than eager skipped with the reason, bad combinations refused."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import harness, write_suite
from scipy import sparse
from scipy.special import softmax
from sklearn.feature_extraction.text import CountVectorizer, TfidfTransformer
from sklearn.linear_model import LogisticRegression

from harness.batching import encode
from harness.config import ModelSpec, TrainingSettings
from harness.models.registry import TaskInfo, get_adapter
from harness.models.tfidf import FIRST_WORD_ID, nb_ratios
from harness.store import Store, load_records
from harness.tasks.data import load_task_data
from harness.tasks.registry import builtin_task
from harness.trackers.work import representative_length
from harness.train import predict

SETTINGS = TrainingSettings(max_seq_length=512, max_train_examples=4000)


@pytest.fixture(scope="module")
def sst2(data_dir):
    return load_task_data(builtin_task("sst2"), SETTINGS, str(data_dir))


def fitted(data, params: dict):
    adapter = get_adapter(ModelSpec(adapter="tfidf", params=params))
    tokenizer = adapter.tokenizer(data.train, SETTINGS)
    model = adapter.build(TaskInfo(2, False, 512, len(tokenizer), tokenizer.pad_token_id))
    adapter.fit(model, encode(tokenizer, data.train, 512), seed=0)
    return model.eval(), tokenizer


def reference_vectorizer(tokenizer, ngrams: int, min_df: int) -> CountVectorizer:
    """scikit-learn's CountVectorizer over the same tokens: n-grams of consecutive vocabulary
    words (an unknown word breaks them), kept when `min_df` texts hold them."""
    words = set(tokenizer.get_vocab()) - set(tokenizer.all_special_tokens)

    def analyze(text: str) -> list[str]:
        tokens = tokenizer.tokenize(text)
        return [
            " ".join(tokens[i : i + n])
            for n in range(1, ngrams + 1)
            for i in range(len(tokens) - n + 1)
            if all(token in words for token in tokens[i : i + n])
        ]

    return CountVectorizer(analyzer=analyze, min_df=min_df)


def feature_names(model, tokenizer) -> list[str]:
    """Our features in our order, decoded from each order's table of keys."""
    names = []
    for n in range(1, model.ngrams + 1):
        for key in model.table(n).tolist():
            ids = [(key // model.vocab_size**power) % model.vocab_size for power in range(n - 1, -1, -1)]
            names.append(" ".join(tokenizer.convert_ids_to_tokens(ids)))
    return names


@pytest.fixture(scope="module")
def logistic(sst2):
    model, tokenizer = fitted(sst2, {"ngrams": 2})
    vectorizer = reference_vectorizer(tokenizer, ngrams=2, min_df=2).fit(sst2.train.text_a)
    order = [vectorizer.vocabulary_[name] for name in feature_names(model, tokenizer)]
    return model, tokenizer, vectorizer, order


def test_the_features_are_scikit_learns_n_grams_and_counts(sst2, logistic):
    model, tokenizer, vectorizer, order = logistic
    assert sorted(order) == list(range(len(vectorizer.vocabulary_)))  # the same n-grams, every one
    assert len(model.table(1)) > 2500 and len(model.table(2)) > 4000  # words and word pairs
    ours = model.count_matrix(encode(tokenizer, sst2.train, 512))
    theirs = vectorizer.transform(sst2.train.text_a)[:, order]
    assert ours.shape == theirs.shape and (ours != theirs).nnz == 0


def test_the_module_gives_scikit_learns_probabilities(sst2, logistic):
    model, tokenizer, vectorizer, order = logistic
    counts = vectorizer.transform(sst2.train.text_a)[:, order]
    tfidf = TfidfTransformer(sublinear_tf=True).fit(counts)
    reference = LogisticRegression(C=4.0, max_iter=1000).fit(tfidf.transform(counts), sst2.train.labels)
    rows = sst2.eval[""]
    expected = reference.predict_proba(tfidf.transform(vectorizer.transform(rows.text_a)[:, order]))
    logits = predict(model, encode(tokenizer, rows, 512), 128, model.weight.device, amp=False)  # (N, 2)
    assert np.abs(softmax(logits, axis=1) - expected).max() < 1e-5
    assert (logits.argmax(1) == expected.argmax(1)).all()
    accuracy = 100 * (logits.argmax(1) == rows.labels).mean()
    assert 72 < accuracy < 85  # 4,000 training sentences; 81.8 from all 67,349 (docs/benchmarks.md)


def test_nb_ratios_by_hand():
    binary = sparse.csr_matrix(np.array([[1, 1, 0], [1, 0, 1], [0, 1, 1]], dtype=float))
    ratios = nb_ratios(binary, np.array([True, False, False]))
    # p = 1 + (1, 1, 0) over its sum 5; q = 1 + (1, 1, 2) over its sum 7
    by_hand = [math.log((2 / 5) / (2 / 7)), math.log((2 / 5) / (2 / 7)), math.log((1 / 5) / (3 / 7))]
    assert ratios == pytest.approx(by_hand)


def test_nbsvm_is_a_logistic_regression_on_ratio_scaled_binary_features(sst2, logistic):
    _, _, vectorizer, _ = logistic
    model, tokenizer = fitted(sst2, {"ngrams": 2, "classifier": "nbsvm", "C": 0.1})
    order = [vectorizer.vocabulary_[name] for name in feature_names(model, tokenizer)]
    binary = (vectorizer.transform(sst2.train.text_a)[:, order] > 0).astype(float)
    ratios = nb_ratios(binary, sst2.train.labels == 1)
    reference = LogisticRegression(C=0.1, max_iter=1000).fit(binary @ sparse.diags(ratios), sst2.train.labels)
    rows = sst2.eval[""]
    present = (vectorizer.transform(rows.text_a)[:, order] > 0).astype(float)
    expected = reference.decision_function(present @ sparse.diags(ratios))  # (N,)
    logits = predict(model, encode(tokenizer, rows, 512), 128, model.weight.device, amp=False)  # (N, 2)
    assert np.abs((logits[:, 1] - logits[:, 0]) - expected).max() < 1e-4


def test_special_and_unknown_tokens_are_never_features(logistic):
    model, _, _, _ = logistic
    assert int(model.table(1).min()) >= FIRST_WORD_ID


SUITE = """
name: classical
tasks:
  - {name: sst2, training: {max_train_examples: 3000, max_eval_examples: 300}, deploy: [eager, int8]}
  - {name: rte, training: {max_train_examples: 600, max_eval_examples: 100}}
  - {name: stsb, training: {max_train_examples: 1500, max_eval_examples: 200}}
models:
  - {adapter: tfidf, label: tfidf}
  - {adapter: tfidf, label: nbsvm, params: {classifier: nbsvm, C: 0.1}, tasks: [sst2, rte]}
seeds: [0, 1]
threads: 1
training: {max_seq_length: 512}
"""


@pytest.fixture(scope="module")
def classical(tmp_path_factory):
    folder = tmp_path_factory.mktemp("classical")
    suite = write_suite(folder / "suite.yaml", SUITE)
    ran = harness("run", str(suite), "--store", str(folder / "store.db"))
    return ran, folder


def test_a_suite_fits_each_cell_once_and_every_consumer_reads_it(classical):
    ran, folder = classical
    assert ran.returncode == 0, ran.stdout + ran.stderr
    records = load_records(folder / "store.db").set_index("cell_id")
    # the fit has no seed: one cell per task and model; nbsvm only where the suite lists it
    cells = ["rte__nbsvm", "rte__tfidf", "sst2__nbsvm", "sst2__tfidf", "stsb__tfidf"]
    assert sorted(records.index) == [f"{cell}__seed0" for cell in cells]
    assert set(records["status"]) == {"ok"}
    with Store(folder / "store.db", create=False) as db:
        for cell_id, row in records.iterrows():
            predictions = db.predictions(row["run_id"], cell_id)
            if row["task"] == "stsb":
                assert "logits" not in predictions and 0 < row["metric.pearson"] < 60
                continue
            probabilities = softmax(np.stack(predictions["logits"]), axis=1)
            assert (probabilities.argmax(1) == predictions["prediction"]).all()
            accuracy = 100 * (predictions["prediction"] == predictions["label"]).mean()
            assert row["metric.accuracy"] == pytest.approx(accuracy)
    sst2 = records.loc["sst2__tfidf__seed0"]
    assert sst2["metric.accuracy"] > 70 and sst2["epochs"] == 1 and sst2["steps"] > 1
    assert any("stands for every seed" in note for note in sst2["notes"])
    deployed = sst2["deployed"]
    assert deployed["eager"]["status"] == "ok"
    assert deployed["eager"]["metrics"]["accuracy"] == pytest.approx(sst2["metric.accuracy"])
    assert deployed["int8"]["status"] == "skipped" and "sparse n-gram model" in deployed["int8"]["reason"]
    assert sst2["params_total"] == sst2["params_trainable"]  # every weight is the fit's


def test_the_flops_are_the_sparse_product_of_the_representative_row(classical, data_dir):
    """2 × (distinct n-grams the model knows) × one output, counted by scikit-learn on the
    evaluation row whose length is nearest the mean."""
    _, folder = classical
    row = load_records(folder / "store.db").set_index("cell_id").loc["sst2__tfidf__seed0"]
    settings = TrainingSettings(max_seq_length=512, max_train_examples=3000, max_eval_examples=300)
    data = load_task_data(builtin_task("sst2"), settings, str(data_dir))
    model, tokenizer = fitted(data, {})
    rows = encode(tokenizer, data.eval[""], 512)
    representative = int(np.flatnonzero(rows.lengths == row["flops_tokens"])[0])
    assert row["flops_tokens"] == representative_length(rows)
    vectorizer = reference_vectorizer(tokenizer, ngrams=2, min_df=2).fit(data.train.text_a)
    known = vectorizer.transform([data.eval[""].text_a[representative]]).nnz
    assert known > 5 and row["flops_per_example"] == 2 * known


def test_bad_combinations_are_refused_before_anything_fits(tmp_path):
    regression = SUITE.replace("tasks: [sst2, rte]", "tasks: [sst2, stsb]")
    ran = harness("run", str(write_suite(tmp_path / "a.yaml", regression)), "--store", str(tmp_path / "s.db"))
    assert ran.returncode == 2 and "nbsvm cannot run on task stsb" in ran.stdout + ran.stderr
    assert "models.1.tasks" in ran.stdout + ran.stderr
    unknown = SUITE.replace("tasks: [sst2, rte]", "tasks: [sst2, mnli]")
    ran = harness("run", str(write_suite(tmp_path / "b.yaml", unknown)), "--store", str(tmp_path / "s.db"))
    assert ran.returncode == 2 and "'mnli', which is not a task of this suite" in ran.stdout + ran.stderr
    stopping = SUITE.replace("training: {max_seq_length: 512}", "training: {early_stopping_patience: 1}")
    ran = harness("run", str(write_suite(tmp_path / "c.yaml", stopping)), "--store", str(tmp_path / "s.db"))
    assert ran.returncode == 2 and "early stopping does not apply" in ran.stdout + ran.stderr
    assert not (tmp_path / "s.db").exists()
    profiled = harness("profile", "--models", "cnn,tfidf", "--out", str(tmp_path / "profile"))
    assert profiled.returncode == 2 and "no step to profile" in profiled.stdout + profiled.stderr
