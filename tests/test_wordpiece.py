"""The WordPiece trainer: hand-checked merges, the same vocabulary in every process, and the same
algorithm as tokenizers' own (non-deterministic) trainer on real sentences."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from test_tokenize_and_batch import _data
from tokenizers import Tokenizer, models, trainers

from harness.vocab import SPECIAL_TOKENS, VocabSettings, _train
from harness.wordpiece import train_wordpiece_vocab


def test_merges_by_hand():
    # pairs: (a, ##b) in "ab" ×2 and "abc": 3; (##b, ##c) and (b, ##c): 1 each, under min_frequency 2
    vocab = train_wordpiece_vocab(["ab", "ab", "abc", "bc"], 100, 2, ["[UNK]"])
    assert vocab == {"[UNK]": 0, "a": 1, "b": 2, "##b": 3, "##c": 4, "ab": 5}
    # a tie, (a, ##b) and (c, ##d) 2 each: the smaller ids merge first, whatever the words' order
    for words in (["ab", "ab", "cd", "cd"], ["cd", "cd", "ab", "ab"]):
        tokens = list(train_wordpiece_vocab(words, 100, 2, ["[UNK]"]))
        assert tokens == ["[UNK]", "a", "c", "##b", "##d", "ab", "cd"]
    # "aaaa" twice: (##a, ##a) 4 → a ##aa ##a; then (a, ##aa) and (##aa, ##a) tie at 2: ids 1,3 < 3,2
    vocab = train_wordpiece_vocab(["aaaa", "aaaa"], 100, 2, ["[UNK]"])
    assert vocab == {"[UNK]": 0, "a": 1, "##a": 2, "##aa": 3, "aaa": 4, "aaaa": 5}
    assert len(train_wordpiece_vocab(["abc"] * 5, 4, 1, ["[UNK]"])) == 4  # stops at vocab_size


CHILD = """
import json, sys
from harness.vocab import _train, VocabSettings
texts = json.load(sys.stdin)
tokenizer = _train(texts, VocabSettings(vocab_size=1500))
print(json.dumps(tokenizer.get_vocab(), sort_keys=True))
"""


def test_same_vocabulary_ids_included_in_every_process(data_dir):
    texts = _data("sst2", data_dir, 3000).train.texts()
    vocabularies = []
    for hash_seed in ("1", "2"):  # tokenizers' own trainer gives another vocabulary each time
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        child = subprocess.run(
            [sys.executable, "-c", CHILD], input=json.dumps(texts), capture_output=True, text=True, env=env
        )
        assert child.returncode == 0, child.stderr
        vocabularies.append(json.loads(child.stdout))
    assert vocabularies[0] == vocabularies[1] and len(vocabularies[0]) == 1500


def test_same_algorithm_as_tokenizers_trainer(data_dir):
    texts = _data("sst2", data_dir, 3000).train.texts()
    ours = _train(texts, VocabSettings(vocab_size=2000))
    theirs = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    theirs.normalizer, theirs.pre_tokenizer = ours.normalizer, ours.pre_tokenizer
    trainer = trainers.WordPieceTrainer(
        vocab_size=2000, min_frequency=2, special_tokens=SPECIAL_TOKENS, show_progress=False
    )
    theirs.train_from_iterator(texts, trainer=trainer)
    ours_vocab, their_vocab = set(ours.get_vocab()), set(theirs.get_vocab())
    assert len(ours_vocab) == len(their_vocab) == 2000
    assert len(ours_vocab - their_vocab) <= 20  # they differ only where pairs tie (3–4 tokens in trials)
    same = sum(ours.encode(t, add_special_tokens=False).tokens == theirs.encode(t).tokens for t in texts)
    assert same >= 0.95 * len(texts)  # 97.5% of these sentences split the same in trials
