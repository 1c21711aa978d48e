"""FLOPs per example: each model's formula against a count by hand at two lengths, and against
torch's FLOP counter on every model whose operations the counter fully sees."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from harness.config import ModelSpec
from harness.models.hf import HFClassifier, sequence_classifier_flops
from harness.models.registry import TaskInfo, get_adapter


def build(adapter: str, params: dict, num_labels: int = 2, is_pair: bool = False) -> torch.nn.Module:
    info = TaskInfo(num_labels=num_labels, is_pair=is_pair, max_seq_length=64, vocab_size=50, pad_token_id=0)
    return get_adapter(ModelSpec(adapter=adapter, params={"vocab_size": 100, **params})).build(info).eval()


def counted(model: torch.nn.Module, tokens: int) -> int:
    """torch's count of one forward pass over one row of `tokens` real tokens."""
    batch = {
        "input_ids": torch.randint(5, 50, (1, tokens)),
        "attention_mask": torch.ones(1, tokens, dtype=torch.long),
        "token_type_ids": torch.zeros(1, tokens, dtype=torch.long),
    }
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(batch)
    return counter.get_total_flops()


# Hand counts (2 × multiply-adds), worked out on paper:
# cnn E=4, F=3, widths 2 and 3, C=2. T=5: 2·4·3·2·(5+1) + 2·4·3·3·(5+2) + 2·(2·3)·2 = 288 + 504 + 24.
# T=10: 2·4·3·2·11 + 2·4·3·3·12 + 24 = 528 + 864 + 24.
CNN = ("cnn", {"embed_dim": 4, "num_filters": 3, "kernel_sizes": [2, 3]}, {5: 816, 10: 1416})
# BiLSTM E=4, H=3, one layer, C=2, D=2·3=6. T=5: recurrence 2 directions · 5 · 2·4·3·(4+3) = 1680;
# pooling 5 · (2·6·6 + 2·6 + 2·6) = 480; head 2·6·2 = 24. T=10: 3360 + 960 + 24.
LSTM = ("rnn", {"embed_dim": 4, "hidden_size": 3}, {5: 2184, 10: 4344})
# GRU, two layers, one direction, E=4, H=3, C=2, D=3. T=5: layer 1 5 · 2·3·3·(4+3) = 630, layer 2
# 5 · 2·3·3·(3+3) = 540; pooling 5 · (2·9 + 6 + 6) = 150; head 2·3·2 = 12. T=10: 1260 + 1080 + 300 + 12.
GRU = (
    "rnn",
    {"cell": "gru", "embed_dim": 4, "hidden_size": 3, "num_layers": 2, "bidirectional": False},
    {5: 1332, 10: 2652},
)
# transformer D=8, d_ff=16, two layers, C=2. Per layer at T=5: projections 4 · 2·5·8·8 = 2560, FFN
# 2 · 2·5·8·16 = 2560, QKᵀ and AV 2 · 2·5·5·8 = 800; two layers 11840; head 2·8·2 = 32.
# T=10: 2 · (5120 + 5120 + 3200) + 32.
TRANSFORMER_PARAMS = {"d_model": 8, "num_heads": 2, "num_layers": 2, "d_ff": 16}
TRANSFORMER = ("transformer", TRANSFORMER_PARAMS, {5: 11872, 10: 26912})
# BERT of the same shape, C=3: the encoder as above (11840 at T=5, 26880 at T=10), the pooler's
# dense layer on [CLS] 2·8·8 = 128 and the classifier 2·8·3 = 48.
BERT_CONFIG = {
    "model_type": "bert",
    "hidden_size": 8,
    "num_attention_heads": 2,
    "num_hidden_layers": 2,
    "intermediate_size": 16,
}
BERT = ("hf", {"config": BERT_CONFIG}, {5: 12016, 10: 27056})


@pytest.mark.parametrize("case", [CNN, LSTM, GRU, TRANSFORMER, BERT], ids=lambda case: case[0])
def test_each_formula_matches_a_count_by_hand_at_two_lengths(case):
    adapter, params, by_hand = case
    model = build(adapter, params, num_labels=3 if adapter == "hf" else 2)
    assert {tokens: model.flops(tokens) for tokens in by_hand} == by_hand


@pytest.mark.parametrize("tokens", [7, 31])
def test_the_counter_agrees_wherever_it_sees_every_operation(tokens):
    """The cnn (convolutions and a linear layer), the transformer with the paper's attention
    written as matrix products, and BERT with eager attention: nothing the counter misses."""
    cnn = build(*CNN[:2])
    assert cnn.flops(tokens) == counted(cnn, tokens)
    spelled_out = build("transformer", {**TRANSFORMER_PARAMS, "attention": "reference"}, is_pair=True)
    assert spelled_out.flops(tokens) == counted(spelled_out, tokens)
    from transformers import AutoConfig, AutoModelForSequenceClassification

    fields = {k: v for k, v in BERT_CONFIG.items() if k != "model_type"}
    config = AutoConfig.for_model("bert", **fields, vocab_size=50, num_labels=3)
    eager = AutoModelForSequenceClassification.from_config(config, attn_implementation="eager")
    bert = HFClassifier(eager, 3)
    assert bert.flops(tokens) == counted(bert.eval(), tokens)
    gpt2_config = AutoConfig.for_model("gpt2", n_layer=2, n_embd=8, n_head=2, vocab_size=50, num_labels=3)
    gpt2_config.pad_token_id = 0
    gpt2 = HFClassifier(
        AutoModelForSequenceClassification.from_config(gpt2_config, attn_implementation="eager"), 3
    )
    assert gpt2.flops(tokens) == counted(gpt2.eval(), tokens)


def test_the_figure_does_not_depend_on_the_attention_kernel():
    """The fused kernel (SDPA) is invisible to the counter on a CPU, which is how one model used to
    get two figures; the formula is the model's, whichever kernel runs it."""
    fused = build("transformer", TRANSFORMER_PARAMS)
    spelled_out = build("transformer", {**TRANSFORMER_PARAMS, "attention": "reference"})
    assert fused.flops(20) == spelled_out.flops(20) == counted(spelled_out, 20)
    assert counted(fused, 20) < fused.flops(20)  # what the counter alone used to record


def test_minilm_formula_is_the_figure_its_cuda_cells_recorded():
    """all-MiniLM-L6-v2 (6 layers, D=384, d_ff=1536) on IMDb's representative row of 206 tokens: the
    committed store held 4,374,431,232 from CPU cells (attention missed) and 4,765,521,408 from CUDA
    cells (everything counted); the formula gives the complete figure on either."""
    from transformers import AutoConfig

    from harness.models.hf import resolve_pretrained

    config = AutoConfig.from_pretrained(resolve_pretrained("minilm-l6"))
    assert sequence_classifier_flops(config, 206, 2) == 4_765_521_408
    attention = 6 * 4 * 206 * 206 * 384
    assert sequence_classifier_flops(config, 206, 2) - attention == 4_374_431_232


def test_gpt2_scores_every_token_and_an_unknown_architecture_has_no_figure():
    """GPT-2, D=8, d_ff 4·8, one layer, C=2, T=5: the block as the transformer's (8·5·64 + 4·5·8·32
    + 4·25·8 = 2560 + 5120 + 800) and its score layer on every token, 2·5·8·2 = 160."""
    from transformers import AutoConfig

    assert (
        sequence_classifier_flops(AutoConfig.for_model("gpt2", n_layer=1, n_embd=8, n_head=2), 5, 2) == 8640
    )
    assert sequence_classifier_flops(AutoConfig.for_model("t5", d_model=8), 5, 2) is None
