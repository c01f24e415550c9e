"""Reductions: hand-computed rollout, and the in-forward capture agrees with eager attentions."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from attn_core.analysis import Prepared, run_batch
from attn_core.attention import Capture, ChunkBatch, rollout
from attn_core.chunking import Chunk
from attn_core.results import Settings


def test_rollout_matches_hand_computation():
    a1 = torch.tensor([[0.5, 0.5], [0.2, 0.8]])
    a2 = torch.tensor([[1.0, 0.0], [0.4, 0.6]])
    # Â = 0.5 I + 0.5 A (rows already sum to 1)
    h1 = torch.tensor([[0.75, 0.25], [0.1, 0.9]])
    h2 = torch.tensor([[1.0, 0.0], [0.2, 0.8]])
    expected = h2 @ h1  # [[0.75, 0.25], [0.23, 0.77]]
    got = rollout([a1, a2])
    assert torch.allclose(got, expected)
    assert torch.allclose(got, torch.tensor([[0.75, 0.25], [0.23, 0.77]]))


def _eager_attentions(model, ids):
    model.model.set_attn_implementation("eager")
    try:
        with torch.inference_mode():
            out = model.model.base_model(input_ids=torch.tensor([ids]), output_attentions=True)
    finally:
        model.model.set_attn_implementation("chumoku")
    return [a[0] for a in out.attentions]  # list of [H, T, T]


def _prepared(model, n):
    from attn_core.alignment import TokenizedText
    from attn_core.analysis import special_affixes

    rng = np.random.default_rng(0)
    ids = rng.integers(10, len(model.tokenizer), size=n).tolist()
    tok = TokenizedText(ids, ["x"] * n, [(i, i + 1) for i in range(n)], [False] * n)
    pre, suf = special_affixes(model)
    return Prepared(tok, [Chunk(0, 0, n, 0, n)], pre, suf, ["k"]), list(pre) + ids + list(suf)


@pytest.mark.parametrize("method", ["received", "cls", "max", "rollout"])
def test_capture_agrees_with_eager_attention(en_bert, method):
    prepared, full_ids = _prepared(en_bert, 20)
    outputs, _ = run_batch(en_bert, prepared, prepared.chunks, Settings(method=method))
    got = outputs[0].scores
    layers = _eager_attentions(en_bert, full_ids)
    a_last = layers[-1].mean(0)  # [T, T]
    if method == "received":
        ref = a_last.mean(0)
    elif method == "cls":
        ref = a_last[0]
    elif method == "max":
        ref = a_last.max(0).values
    else:
        ref = rollout([lay.mean(0) for lay in layers])[0]
    ref = ref[1:-1]  # drop [CLS] and [SEP], renormalise
    ref = (ref / ref.sum()).numpy()
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-6)
    assert abs(got.sum() - 1) < 1e-5


def test_padding_does_not_change_scores(en_bert):
    prepared, _ = _prepared(en_bert, 30)
    alone, _ = run_batch(en_bert, prepared, prepared.chunks, Settings())
    short = Chunk(1, 0, 12, 0, 12)
    both, _ = run_batch(en_bert, prepared, [prepared.chunks[0], short], Settings())
    np.testing.assert_allclose(both[0].scores, alone[0].scores, rtol=1e-4, atol=1e-6)
    solo_short, _ = run_batch(en_bert, prepared, [short], Settings())
    np.testing.assert_allclose(both[1].scores, solo_short[0].scores, rtol=1e-4, atol=1e-6)


def test_layer_and_head_choices(en_bert):
    prepared, full_ids = _prepared(en_bert, 16)
    layers = _eager_attentions(en_bert, full_ids)
    out, _ = run_batch(en_bert, prepared, prepared.chunks, Settings(layer=0, head=2))
    ref = layers[0][2].mean(0)[1:-1]
    np.testing.assert_allclose(out[0].scores, (ref / ref.sum()).numpy(), rtol=1e-4, atol=1e-6)
    out, _ = run_batch(en_bert, prepared, prepared.chunks, Settings(layer="all", head="max"))
    ref = torch.stack([lay.max(0).values.mean(0) for lay in layers]).mean(0)[1:-1]
    np.testing.assert_allclose(out[0].scores, (ref / ref.sum()).numpy(), rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError):
        run_batch(en_bert, prepared, prepared.chunks, Settings(layer=7))


def test_norm_weighting_uses_value_output_norms(en_bert):
    prepared, full_ids = _prepared(en_bert, 16)
    out, _ = run_batch(en_bert, prepared, prepared.chunks, Settings(method="norm"))
    plain, _ = run_batch(en_bert, prepared, prepared.chunks, Settings(method="received"))
    assert abs(out[0].scores.sum() - 1) < 1e-5
    assert not np.allclose(out[0].scores, plain[0].scores)


def test_causal_correction_and_bos_sink(gpt2):
    prepared, full_ids = _prepared(gpt2, 24)
    assert prepared.prefix == (gpt2.tokenizer.bos_token_id,)
    out, _ = run_batch(gpt2, prepared, prepared.chunks, Settings())
    layers = _eager_attentions(gpt2, full_ids)
    a = layers[-1].mean(0).numpy()  # [T, T], lower triangular
    t = a.shape[0]
    # times-uniform share, averaged over the queries that can see each key
    ref = np.array([np.mean([a[i, j] * (i + 1) for i in range(j, t)]) for j in range(t)])[1:]
    ref = ref / ref.sum()
    np.testing.assert_allclose(out[0].scores, ref, rtol=1e-4, atol=1e-6)
    # uncorrected column means would favour early tokens heavily
    naive = a.mean(0)[1:]
    assert naive[0] / naive[-1] > out[0].scores[0] / out[0].scores[-1]


def test_capture_needs_only_requested_layers(en_bert):
    batch = ChunkBatch(torch.ones(1, 4, dtype=torch.bool), torch.ones(1, 4, dtype=torch.bool), False)
    assert Capture(Settings(), 6, batch).layers == {5}
    assert Capture(Settings(layer=2), 6, batch).layers == {2}
    assert Capture(Settings(method="rollout"), 6, batch).layers == set(range(6))


@pytest.mark.parametrize("causal", [False, True], ids=["encoder", "causal"])
@pytest.mark.parametrize("method,head", [("received", "mean"), ("max", "max"), ("cls", 1), ("rollout", "mean"),
                                         ("norm", "mean")])
def test_capture_folds_numpy_arrays_exactly_as_torch_tensors(method, head, causal):
    """The ONNX Runtime path hands the capture numpy arrays, the torch path tensors: one implementation of every
    reduction must give both the same scores (padding, kept positions, causal correction included)."""
    rng = np.random.default_rng(1)
    layers, heads, width, dim = 3, 4, 9, 5
    logits = rng.normal(size=(layers, 2, heads, width, width)).astype(np.float32)
    valid = np.ones((2, width), dtype=bool)
    valid[1, 6:] = False  # the second sequence is padded
    if causal:
        logits = np.where(np.tril(np.ones((width, width), dtype=bool)), logits, -1e9)
    logits = np.where(valid[:, None, None, :], logits, -1e9)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    value = rng.normal(size=(layers, 2, heads, width, dim)).astype(np.float32)
    keep = valid.copy()
    keep[:, 0] = False  # a special token stays unscored
    projections = {i: rng.normal(size=(7, heads * dim)).astype(np.float32) for i in range(layers)}
    settings = Settings(method=method, layer="all" if method != "rollout" else "last", head=head)
    got = {}
    for kind, arr in (("numpy", np.asarray), ("torch", torch.from_numpy)):
        cap = Capture(settings, layers, ChunkBatch(arr(valid), arr(keep), causal),
                      {i: arr(w) for i, w in projections.items()})
        for i in range(layers):
            if cap.wants(i):
                cap.consume(i, arr(probs[i]), arr(value[i]))
        got[kind] = cap.cpu_scores()
        assert isinstance(cap.scores(), np.ndarray if kind == "numpy" else torch.Tensor)
    np.testing.assert_allclose(got["numpy"], got["torch"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got["numpy"].sum(-1), 1.0, rtol=1e-5)
    assert (got["numpy"][~keep] == 0).all()
