"""The from-scratch models (cnn, rnn, transformer) on real SST-2 sentences.

- attention: the fused kernel, the paper's formula and `nn.MultiheadAttention` agree;
- sinusoidal positions: the paper's formula at hand-checked positions;
- padding: the same sentences padded to their length or to 64 tokens give the same logits;
- capacity: every model fits a batch of 32 real sentences;
- seeds: same seed, same model; other seed, other model;
- regression: one score per example.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from harness.batching import collate, encode
from harness.cell import seed_everything
from harness.config import ModelSpec, TrainingSettings
from harness.models.registry import TaskInfo, get_adapter
from harness.models.transformer import (
    MultiHeadSelfAttention,
    TransformerParams,
    reference_attention,
    sinusoidal_positions,
)
from harness.tasks.data import Examples, load_task_data
from harness.tasks.registry import BUILTIN_DIR as BUILTIN_TASK_DIR
from harness.tasks.registry import load_task
from harness.train import predict, to_predictions, train

MAX_LEN = 64
CPU = torch.device("cpu")

MODELS = {
    "cnn": ModelSpec(adapter="cnn"),
    "rnn-lstm": ModelSpec(adapter="rnn", params={"cell": "lstm"}),
    "rnn-gru": ModelSpec(adapter="rnn", params={"cell": "gru", "num_layers": 2}),
    "transformer-post-cls": ModelSpec(adapter="transformer", params={"norm": "post", "pooling": "cls"}),
    "transformer-post-mean": ModelSpec(adapter="transformer", params={"norm": "post", "pooling": "mean"}),
    "transformer-pre-cls": ModelSpec(adapter="transformer", params={"norm": "pre", "pooling": "cls"}),
    "transformer-pre-mean": ModelSpec(adapter="transformer", params={"norm": "pre", "pooling": "mean"}),
    "transformer-learned-reference": ModelSpec(
        adapter="transformer", params={"positions": "learned", "attention": "reference", "activation": "gelu"}
    ),
}


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: these small models gain little from two, and on a busy 2-core machine
    two OpenMP threads wait on each other (steps measured 10x slower than with one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def sst2(data_dir):
    """2,000 real SST-2 training sentences (a fixed subset) and 200 validation sentences."""
    task = load_task(BUILTIN_TASK_DIR / "sst2.yaml")
    return load_task_data(
        task, TrainingSettings(max_train_examples=2000, max_eval_examples=200), str(data_dir)
    )


@pytest.fixture(scope="module")
def tokenizer(sst2):
    """The real vocabulary tokenizer that the from-scratch adapters train (the same for all three)."""
    return get_adapter(MODELS["cnn"]).tokenizer(sst2.train, TrainingSettings())


def build(spec: ModelSpec, tokenizer, seed: int = 0, num_labels: int = 2, is_pair: bool = False):
    seed_everything(seed)
    info = TaskInfo(
        num_labels=num_labels,
        is_pair=is_pair,
        max_seq_length=MAX_LEN,
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
    )
    return get_adapter(spec).build(info)


def pad_to(batch: dict[str, torch.Tensor], width: int, pad_id: int) -> dict[str, torch.Tensor]:
    """The same rows with more padding on the right: pad ids, mask 0, segment 0."""
    extra = width - batch["input_ids"].size(1)
    fill = {"input_ids": pad_id, "attention_mask": 0, "token_type_ids": 0}
    return {
        key: nn.functional.pad(value, (0, extra), value=fill[key]) if key in fill else value
        for key, value in batch.items()
    }


# ----------------------------------------------------------------------------- attention


def test_fused_attention_equals_reference_formula_and_torch_multihead_attention():
    torch.manual_seed(0)
    B, T, D, H = 3, 7, 32, 4
    params = TransformerParams(d_model=D, num_heads=H, dropout=0.0)
    fused = MultiHeadSelfAttention(params).eval()
    reference = MultiHeadSelfAttention(params.model_copy(update={"attention": "reference"})).eval()
    reference.load_state_dict(fused.state_dict())
    torch_mha = nn.MultiheadAttention(D, H, dropout=0.0, batch_first=True).eval()
    with torch.no_grad():
        torch_mha.in_proj_weight.copy_(
            torch.cat([fused.q_proj.weight, fused.k_proj.weight, fused.v_proj.weight])
        )
        torch_mha.in_proj_bias.copy_(torch.cat([fused.q_proj.bias, fused.k_proj.bias, fused.v_proj.bias]))
        torch_mha.out_proj.weight.copy_(fused.out_proj.weight)
        torch_mha.out_proj.bias.copy_(fused.out_proj.bias)

    x = torch.randn(B, T, D)
    lengths = torch.tensor([7, 4, 1])
    key_mask = torch.arange(T)[None, :] < lengths[:, None]  # (B, T), True = real token
    with torch.no_grad():
        out_fused = fused(x, key_mask)
        out_reference = reference(x, key_mask)
        out_torch, _ = torch_mha(x, x, x, key_padding_mask=~key_mask, need_weights=False)

    assert not torch.isnan(out_fused).any()  # padded query rows too
    torch.testing.assert_close(out_fused, out_reference, atol=1e-5, rtol=0)
    torch.testing.assert_close(out_fused, out_torch, atol=1e-5, rtol=0)

    # The bare formula against the fused kernel, and masked keys really have no influence.
    q, k, v = torch.randn(3, B, H, T, D // H).unbind(0)
    mask = key_mask[:, None, None, :]
    expected = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(reference_attention(q, k, v, mask), expected, atol=1e-5, rtol=0)
    padded_keys = ~mask.transpose(-1, -2)  # (B, 1, T, 1): rows of K and V at padded positions
    k2, v2 = k.masked_fill(padded_keys, 1e3), v.masked_fill(padded_keys, -1e3)
    torch.testing.assert_close(reference_attention(q, k2, v2, mask), expected, atol=1e-5, rtol=0)


def test_sinusoidal_positions_follow_the_paper_formula(tokenizer):
    d = 16
    pe = sinusoidal_positions(50, d)
    assert pe.shape == (50, d)
    assert torch.equal(pe[0, 0::2], torch.zeros(d // 2))  # sin(0)
    assert torch.equal(pe[0, 1::2], torch.ones(d // 2))  # cos(0)
    assert pe[1, 0].item() == pytest.approx(math.sin(1.0), abs=1e-7)  # i = 0: 10000^0 = 1
    assert pe[1, 1].item() == pytest.approx(math.cos(1.0), abs=1e-7)
    # pos 5, dim 6 = 2i with i = 3: sin(5 / 10000^(6/16)); dim 7: the matching cosine
    angle = 5 / 10000 ** (6 / 16)  # = 5 / 31.6227766...
    assert pe[5, 6].item() == pytest.approx(math.sin(angle), abs=1e-7)
    assert pe[5, 7].item() == pytest.approx(math.cos(angle), abs=1e-7)
    assert pe[5, 6].item() == pytest.approx(0.1574559, abs=1e-6)  # sin(0.1581139), by hand
    # the last pair has the longest wavelength: 10000^(14/16) ≈ 3162 steps per radian
    assert pe[49, 14].item() == pytest.approx(math.sin(49 / 10000 ** (14 / 16)), abs=1e-7)

    # the model adds exactly these, after scaling the token embedding by sqrt(d_model)
    model = build(ModelSpec(adapter="transformer", params={"d_model": d, "num_heads": 2}), tokenizer).eval()
    ids = torch.tensor([[2, 10, 11, 3]])
    batch = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "token_type_ids": torch.zeros_like(ids),
    }
    with torch.no_grad():
        embedded = model.embed(batch)
        expected = model.embed.tokens(ids) * math.sqrt(d) + pe[:4]
    torch.testing.assert_close(embedded, expected)


# ----------------------------------------------------------------------------- padding


@pytest.mark.parametrize("is_pair", [False, True], ids=["single", "pair"])
@pytest.mark.parametrize("name", list(MODELS))
def test_padding_does_not_change_the_logits(name, is_pair, sst2, tokenizer):
    short = [i for i, text in enumerate(sst2.eval[""].text_a) if len(tokenizer(text).input_ids) <= 24]
    rows = sst2.eval[""].take(np.array(short[:12]))  # so that pairs of them fit in 64 tokens
    if is_pair:  # real sentences as pairs: sentence i with sentence i + 1, segment ids 0/1
        rows = Examples(rows.text_a, rows.text_a[1:] + rows.text_a[:1], rows.labels, rows.row_ids)
    encoded = encode(tokenizer, rows, MAX_LEN)
    if is_pair:
        assert (encoded.token_types == 1).any()
    model = build(MODELS[name], tokenizer, is_pair=is_pair).eval()

    tight = collate(encoded, np.arange(len(rows)))  # padded to the longest of these rows
    assert tight["input_ids"].size(1) < MAX_LEN
    loose = pad_to(tight, MAX_LEN, tokenizer.pad_token_id)
    with torch.no_grad():
        logits_tight = model(tight)
        logits_loose = model(loose)
        alone = torch.cat([model(collate(encoded, np.array([i]))) for i in (0, 5)])  # no padding
    assert logits_tight.shape == (len(rows), 2)
    assert torch.isfinite(logits_loose).all()
    torch.testing.assert_close(logits_loose, logits_tight, atol=1e-5, rtol=0)
    torch.testing.assert_close(alone, logits_tight[[0, 5]], atol=1e-5, rtol=0)


def test_cnn_embedding_dropout_noises_training_only(sst2, tokenizer):
    """`embed_dropout` drops its share of real embedding entries in training, none at evaluation,
    and padding stays zero (so the max over time still ignores it)."""
    encoded = encode(tokenizer, sst2.train.take(np.arange(32)), MAX_LEN)
    batch = pad_to(collate(encoded, np.arange(32)), MAX_LEN, tokenizer.pad_token_id)
    real = batch["attention_mask"].bool()  # (B, T)
    model = build(ModelSpec(adapter="cnn", params={"embed_dropout": 0.4}), tokenizer)
    seen: list[torch.Tensor] = []
    model.convs[0].register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    with torch.no_grad():
        model.train()(batch)
        model.eval()(batch)
    for conv_input, share in zip(seen, (0.4, 0.0), strict=True):
        x = conv_input.transpose(1, 2)  # (B, T, D)
        assert (x[~real] == 0).all()
        assert (x[real] == 0).float().mean().item() == pytest.approx(share, abs=0.02)


def test_cnn_embeddings_start_uniform_in_their_range_with_padding_at_zero(tokenizer):
    """The cnn's token and segment tables start in ±0.05 (std 0.05/√3), the padding row at
    zero; `embed_init_range: null` keeps PyTorch's N(0, 1)."""
    model = build(ModelSpec(adapter="cnn"), tokenizer, is_pair=True)
    tokens, segments = model.embed.tokens.weight.detach(), model.embed.segments.weight.detach()
    real = torch.cat([tokens[: tokenizer.pad_token_id], tokens[tokenizer.pad_token_id + 1 :]])
    assert (tokens[tokenizer.pad_token_id] == 0).all()
    assert real.abs().max().item() <= 0.05 and segments.abs().max().item() <= 0.05
    assert real.std().item() == pytest.approx(0.05 / math.sqrt(3), rel=0.05)

    default = build(ModelSpec(adapter="cnn", params={"embed_init_range": None}), tokenizer)
    assert default.embed.tokens.weight.std().item() == pytest.approx(1.0, rel=0.05)


# ----------------------------------------------------------------------------- capacity

OVERFIT = {  # model → (learning rate, steps): full-batch steps on the same 32 sentences
    "cnn": (1e-2, 15),
    "rnn-lstm": (1e-2, 30),
    "rnn-gru": (1e-2, 45),  # at 30, last/first loss 0.00–0.03 with most vocabularies, 0.15 in one suite run
    "transformer-post-mean": (1e-3, 30),
    "transformer-pre-cls": (1e-3, 30),
}


@pytest.mark.parametrize("name", list(OVERFIT))
def test_model_overfits_a_batch_of_real_sentences(name, sst2, tokenizer):
    rows = sst2.train.take(np.arange(32))
    assert 0 < rows.labels.mean() < 1  # both classes present
    encoded = encode(tokenizer, rows, MAX_LEN)
    model = build(MODELS[name], tokenizer)
    learning_rate, steps = OVERFIT[name]
    settings = TrainingSettings(
        epochs=steps, batch_size=32, learning_rate=learning_rate, warmup_ratio=0.0, weight_decay=0.0
    )
    stats = train(model, encoded, settings, seed=0, device=CPU)
    accuracy = (to_predictions(predict(model, encoded, 32, CPU)) == encoded.labels).mean()
    assert stats.steps == steps
    # the last five steps' mean: each step's loss is taken under dropout, and in one full-suite
    # run the LSTM's last step read 0.16 of its first, where runs alone read 1e-4 to 4e-3
    last_steps = np.mean([epoch["train_loss"] for epoch in stats.history[-5:]])
    assert last_steps < 0.1 * stats.history[0]["train_loss"]
    assert accuracy >= 0.95, f"{name}: train accuracy {accuracy:.2f} after {steps} steps"


# ----------------------------------------------------------------------------- seeds


@pytest.mark.parametrize("name", ["cnn", "rnn-lstm", "transformer-post-mean"])
def test_same_seed_same_model_other_seed_other_model(name, sst2, tokenizer):
    encoded = encode(tokenizer, sst2.train.take(np.arange(64)), MAX_LEN)
    batch = collate(encoded, np.arange(64))
    settings = TrainingSettings(epochs=1, batch_size=16, learning_rate=1e-3)

    def trained(seed: int):
        model = build(MODELS[name], tokenizer, seed=seed)
        initial = {key: value.clone() for key, value in model.state_dict().items()}
        train(model, encoded, settings, seed=seed, device=CPU)  # 4 steps, dropout on
        with torch.no_grad():
            return initial, model.state_dict(), model.eval()(batch)

    init_a, final_a, out_a = trained(0)
    init_b, final_b, out_b = trained(0)
    init_c, _, _ = trained(1)
    assert all(torch.equal(init_a[key], init_b[key]) for key in init_a)
    assert all(torch.equal(final_a[key], final_b[key]) for key in final_a)
    assert torch.equal(out_a, out_b)
    differing = [key for key in init_a if not torch.equal(init_a[key], init_c[key])]
    assert "head.weight" in differing and any("embed" in key for key in differing)


# ----------------------------------------------------------------------------- regression


@pytest.mark.parametrize("name", ["cnn", "rnn-lstm", "transformer-pre-cls"])
def test_regression_head_gives_one_score_per_example(name, sst2, tokenizer):
    encoded = encode(tokenizer, sst2.train.take(np.arange(5)), MAX_LEN)
    batch = collate(encoded, np.arange(5))
    model = build(MODELS[name], tokenizer, num_labels=1)
    scores = model(batch)
    assert scores.shape == (5,)
    nn.functional.mse_loss(scores, batch["labels"].float()).backward()  # trains as regression
    assert model.head.weight.grad is not None and model.head.weight.grad.abs().sum() > 0


def test_attention_dropout_is_its_own_knob(sst2, tokenizer):
    """`attention_dropout` drops attention weights in training only; None keeps `dropout`'s rate."""
    encoded = encode(tokenizer, sst2.train.take(np.arange(16)), MAX_LEN)
    batch = collate(encoded, np.arange(16))

    def two_training_passes(**params) -> tuple[torch.Tensor, torch.Tensor]:
        spec = ModelSpec(adapter="transformer", params={"dropout": 0.0, **params})
        model = build(spec, tokenizer).train()
        with torch.no_grad():
            return model(batch), model(batch)

    first, second = two_training_passes(attention_dropout=0.5)
    assert not torch.allclose(first, second)  # the weights were dropped, differently each pass
    first, second = two_training_passes(attention_dropout=0.0)
    torch.testing.assert_close(first, second, atol=0, rtol=0)
    first, second = two_training_passes()  # None: the same as dropout, here 0
    torch.testing.assert_close(first, second, atol=0, rtol=0)


def test_fused_optimizer_steps_as_the_per_tensor_loop(sst2, tokenizer):
    """The fused AdamW that `make_optimizer` picks takes the same steps as PyTorch's reference loop."""
    from harness.train import loss_fn, make_optimizer

    encoded = encode(tokenizer, sst2.train.take(np.arange(32)), MAX_LEN)
    batch = collate(encoded, np.arange(32))
    settings = TrainingSettings(learning_rate=1e-3)
    fused_model = build(ModelSpec(adapter="transformer", params={"dropout": 0.0}), tokenizer)
    loop_model = build(ModelSpec(adapter="transformer", params={"dropout": 0.0}), tokenizer)
    loop_model.load_state_dict(fused_model.state_dict())
    fused = make_optimizer(fused_model, settings)
    twin = dict(zip(map(id, fused_model.parameters()), loop_model.parameters(), strict=True))
    groups = [  # make_optimizer's groups, for the other copy
        {"params": [twin[id(p)] for p in group["params"]], "weight_decay": group["weight_decay"]}
        for group in fused.param_groups
    ]
    loop = torch.optim.AdamW(groups, lr=settings.learning_rate, foreach=False)
    assert fused.defaults["fused"] and not loop.defaults["foreach"]
    # One step: after it, Adam turns rounding noise in a zero gradient (the key projection's bias:
    # softmax ignores a constant shift) into ±lr steps, in either optimizer.
    for model, optimizer in ((fused_model, fused), (loop_model, loop)):
        optimizer.zero_grad()
        loss_fn(model(batch), batch["labels"]).backward()
        optimizer.step()
    for a, b in zip(fused_model.parameters(), loop_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_cpu_dropout_keeps_its_share_scales_the_rest_and_follows_the_seed():
    """`harness.models.dropout` (16-bit draws) is dropout: each element kept with probability
    1 − p and scaled by 1 / (1 − p), nothing dropped at evaluation, the seed fixes the mask."""
    from harness.models.dropout import Dropout

    x = torch.ones(400, 1000)
    for p in (0.1, 0.5):
        layer = Dropout(p).train()
        torch.manual_seed(0)
        out = layer(x)
        kept = out != 0
        assert kept.float().mean().item() == pytest.approx(1 - p, abs=0.003)  # 400,000 draws
        torch.testing.assert_close(out[kept], torch.full_like(out[kept], 1 / (1 - p)))
        torch.manual_seed(0)
        torch.testing.assert_close(layer(x), out, atol=0, rtol=0)
        assert not torch.equal(layer(x), out)  # the next draw differs
        torch.testing.assert_close(layer.eval()(x), x, atol=0, rtol=0)
    rows = torch.ones(50_000, 2)
    columns = Dropout(0.5).train()(rows)
    # the 16-bit halves of one 64-bit draw are independent: no pattern along the last axis
    first, second = columns[:, 0] != 0, columns[:, 1] != 0
    assert first.float().mean().item() == pytest.approx(0.5, abs=0.01)
    assert (first == second).float().mean().item() == pytest.approx(0.5, abs=0.01)


def test_attention_dropout_in_cpu_training_is_the_reference_formula(sst2, tokenizer):
    """With attention dropout, a CPU's training forward goes through `reference_attention`
    (SDPA has no fused CPU kernel that drops): `fused` and `reference` models draw the same
    masks from one seed and give the same logits and gradients."""
    encoded = encode(tokenizer, sst2.train.take(np.arange(16)), MAX_LEN)
    batch = collate(encoded, np.arange(16))
    results = []
    for attention in ("fused", "reference"):
        torch.manual_seed(0)
        model = build(ModelSpec(adapter="transformer", params={"attention": attention}), tokenizer).train()
        torch.manual_seed(1)
        logits = model(batch)
        logits.sum().backward()
        results.append((logits.detach(), model.blocks[0].attn.q_proj.weight.grad))
    (fused_logits, fused_grad), (ref_logits, ref_grad) = results
    torch.testing.assert_close(fused_logits, ref_logits, atol=0, rtol=0)
    torch.testing.assert_close(fused_grad, ref_grad, atol=0, rtol=0)


def test_a_hugging_face_model_drops_with_cheap_masks_and_is_unchanged_at_evaluation(sst2):
    """The hf adapter swaps MiniLM-L6's `nn.Dropout` layers (hidden, embeddings, classifier) for
    `harness.models.dropout.Dropout` at the same rates: evaluation logits are the untouched
    model's to the bit; training draws other masks per seed, the same for a seed."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from harness.models.dropout import Dropout
    from harness.models.hf import resolve_pretrained

    folder = resolve_pretrained("minilm-l6")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    spec = ModelSpec(adapter="hf", params={"pretrained": "minilm-l6"})
    model = build(spec, tokenizer)
    seed_everything(0)
    untouched = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2)
    swapped = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    # 6 layers × 3 (attention weights, its output, the feed-forward's), embeddings, head; the
    # attention weights' is read for its rate only: SDPA drops them
    assert len(swapped) == 20 and all(type(m) is Dropout for m in swapped)
    assert {m.p for m in swapped} == {untouched.config.hidden_dropout_prob}

    batch = collate(encode(tokenizer, sst2.train.take(np.arange(8)), MAX_LEN), np.arange(8))
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(batch), untouched.eval()(**inputs).logits, atol=0, rtol=0)
        model.train()
        torch.manual_seed(1)
        first = model(batch)
        torch.manual_seed(1)
        torch.testing.assert_close(model(batch), first, atol=0, rtol=0)
        assert not torch.equal(model(batch), first)
        assert not torch.equal(first, model.eval()(batch))
