"""Faithfulness badge: does deleting the highlighted words move the model more than deleting others?

For a fixed, evenly spaced sample of the analysis's own windows (so the cost is bounded whatever the
document's length), each window is run through the model as is and with words deleted:

* top       – the window's top `fraction` of words by the analysis's scores;
* random    – `draws` uniform random selections of the same number of words (fixed seed);
* baseline  – the same number of words, longest first (a highlight that needs no model at all).

Deleting a word removes its tokens from the window's input ids. The output shift is measured in the
way the model is meant to be used:

* encoders     – 1 − cosine between the mean-pooled last hidden states (sentence-embedding pooling,
                 attention-masked, special tokens included as sentence-transformers does);
* classifiers  – drop in the probability of the class predicted for the intact window
                 (ERASER "comprehensiveness"; may be negative);
* causal LMs   – increase of the mean next-token loss on the tokens that remain, each compared with
                 its own loss in the intact window.

ratio_random = mean top shift / mean random shift and ratio_baseline = mean top shift / mean baseline
shift (ratios of means over windows, which are stable where per-window ratios are not). A ratio whose
denominator is not positive is reported as None. Pipeline-style: plan → select → measure → summarise,
each a plain function; `measure_faithfulness()` composes them and caches the summary in the ResultStore.
"""
from __future__ import annotations

import bisect
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from .alignment import tokenize_document
from .batching import default_batch_tokens, length_batches, pad_batch, pad_id
from .cache import ResultStore, default_store, make_key
from .models import LoadedModel
from .progress import Cancel, Progress, report
from .results import AnalysisResult, ChunkInfo, ModelKind, WordScore

FAITHFULNESS_VERSION = "1"  # bump when the measurement changes: old cache entries stop matching
MEASURES = {
    ModelKind.ENCODER: "1 − cosine of the mean-pooled embedding",
    ModelKind.CLASSIFIER: "drop in the predicted class's probability",
    ModelKind.CAUSAL: "increase in LM loss on the remaining tokens",
}


# ----------------------------------------------------------------------------------------------- result
@dataclass(frozen=True)
class Faithfulness:
    method: str  # the reduction that produced the scores (Settings.method)
    ratio_random: float | None  # mean top shift / mean random shift; None when not defined
    ratio_baseline: float | None  # mean top shift / mean longest-words-first shift
    fraction: float  # share of each window's words deleted
    draws: int  # random selections per window
    windows: int  # windows measured
    top_shift: float | None
    random_shift: float | None
    baseline_shift: float | None
    seed: int = 0
    measure: str = ""  # what "shift" is for this model kind
    layer: str | int = "last"
    head: str | int = "mean"
    cached: bool = field(default=False, compare=False)

    @property
    def badge(self) -> str:
        """e.g. "4.0× random · 1.3× word-length baseline"."""
        return f"{format_ratio(self.ratio_random)} random · {format_ratio(self.ratio_baseline)} word-length baseline"

    @property
    def explanation(self) -> str:
        pct = f"{self.fraction:.0%}"
        if self.windows == 0:
            return "Too few words to test: the highlight's faithfulness could not be measured."
        what = {"1 − cosine of the mean-pooled embedding": "the document embedding",
                "drop in the predicted class's probability": "the predicted class's probability",
                "increase in LM loss on the remaining tokens": "the language-model loss"}.get(self.measure, "the output")
        return (f"Deleting the top {pct} highlighted words changes {what} {format_ratio(self.ratio_random)} as much as "
                f"deleting a random {pct} ({self.draws} draws) and {format_ratio(self.ratio_baseline)} as much as "
                f"deleting the {pct} longest words ({self.windows} window{'s' if self.windows != 1 else ''} tested).")

    def to_json(self, digits: int | None = 6) -> dict[str, Any]:
        """Plain JSON (no inf/nan); `digits=None` keeps full precision (what the cache stores)."""
        d = asdict(self)
        d.pop("cached")
        for k in ("ratio_random", "ratio_baseline", "top_shift", "random_shift", "baseline_shift"):
            if d[k] is not None:
                d[k] = float(d[k]) if digits is None else round(float(d[k]), digits)
        d["badge"] = self.badge
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any], cached: bool = False) -> "Faithfulness":
        names = {f for f in cls.__dataclass_fields__ if f != "cached"}
        return cls(**{k: v for k, v in d.items() if k in names}, cached=cached)


def format_ratio(r: float | None) -> str:
    if r is None or not math.isfinite(r):
        return "n/a×"
    return f"{r:.1f}×"


# ------------------------------------------------------------------------------------------ pure pieces
def ratio(numerator: float | None, denominator: float | None, eps: float = 1e-12) -> float | None:
    """numerator / denominator, or None when the denominator is missing, not finite or not positive."""
    if numerator is None or denominator is None:
        return None
    if not (math.isfinite(numerator) and math.isfinite(denominator)) or denominator <= eps:
        return None
    return float(numerator / denominator)


@dataclass(frozen=True)
class WindowShift:
    """Measured shifts for one window."""

    window: int  # chunk index
    n_words: int
    k: int  # words deleted per selection
    top: float
    random: tuple[float, ...]
    baseline: float


def summarize(windows: Sequence[WindowShift], *, method: str, fraction: float, draws: int, seed: int = 0,
              measure: str = "", layer: str | int = "last", head: str | int = "mean") -> Faithfulness:
    """Ratios of mean shifts over windows (random: mean over windows and draws)."""
    if not windows:
        return Faithfulness(method, None, None, fraction, draws, 0, None, None, None, seed, measure, layer, head)
    top = float(np.mean([w.top for w in windows]))
    rnd = float(np.mean([r for w in windows for r in w.random])) if any(w.random for w in windows) else None
    base = float(np.mean([w.baseline for w in windows]))
    return Faithfulness(method, ratio(top, rnd), ratio(top, base), fraction, draws, len(windows), top, rnd, base,
                        seed, measure, layer, head)


def pick_windows(chunks: Sequence[ChunkInfo], max_windows: int) -> list[ChunkInfo]:
    """Up to `max_windows` chunks evenly spaced over the document (first and last included)."""
    n = len(chunks)
    if n == 0 or max_windows <= 0:
        return []
    if n <= max_windows:
        return list(chunks)
    idx = sorted({int(round(i)) for i in np.linspace(0, n - 1, max_windows)})
    return [chunks[i] for i in idx]


def deletion_count(n_words: int, fraction: float) -> int:
    """round(fraction × n), at least one word (and never all of them when there are two or more)."""
    k = int(math.floor(fraction * n_words + 0.5))
    return max(1, min(k, n_words - 1)) if n_words >= 2 else n_words


def top_selection(scores: Sequence[float], k: int) -> list[int]:
    """Indices of the k highest scores; ties go to the earlier word."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    return sorted(order[:k])


def longest_selection(texts: Sequence[str], k: int) -> list[int]:
    """The word-length baseline: the k longest words; ties go to the earlier word."""
    order = sorted(range(len(texts)), key=lambda i: (-len(texts[i]), i))
    return sorted(order[:k])


def random_selections(n: int, k: int, draws: int, seed: int, window: int) -> list[list[int]]:
    """`draws` uniform selections of k of n words, reproducible from (seed, window)."""
    rng = np.random.default_rng([seed, window])
    return [sorted(int(i) for i in rng.choice(n, size=k, replace=False)) for _ in range(draws)]


def word_tokens(words: Sequence[tuple[int, int]], token_spans: Sequence[tuple[int, int]]) -> list[list[int]]:
    """For each word span, the indices of the tokens overlapping it."""
    ends = [e for _, e in token_spans]
    out = []
    for ws, we in words:
        j = bisect.bisect_right(ends, ws)  # first token ending after the word starts
        toks = []
        while j < len(token_spans) and token_spans[j][0] < we:
            s, e = token_spans[j]
            if e > ws and e > s:
                toks.append(j)
            j += 1
        out.append(toks)
    return out


def cosine_shift(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 or nb == 0.0:
        return 0.0 if na == nb else 1.0
    return float(1.0 - np.dot(a, b) / (na * nb))


# ------------------------------------------------------------------------------------------- the model
@dataclass(frozen=True)
class _Window:
    chunk: int
    ids: list[int]  # content token ids of the intact window
    word_tokens: list[list[int]]  # candidate words → token indices (window-local)
    scores: list[float]
    texts: list[str]


def _window_inputs(result: AnalysisResult, model: LoadedModel, chunk: ChunkInfo, budget: int) -> _Window:
    """Tokenize only this window's text (bounded cost) and map the analysis's words onto its tokens."""
    text = result.document.text
    tok = tokenize_document(model.tokenizer, text[chunk.start:chunk.end])
    ids = tok.ids[:budget]
    spans = [(s + chunk.start, e + chunk.start) for s, e in tok.spans[:budget]]
    starts = [w.start for w in result.words]
    lo = bisect.bisect_left(starts, chunk.start)
    hi = bisect.bisect_left(starts, chunk.end)
    ws: list[WordScore] = [w for w in result.words[lo:hi] if w.end <= chunk.end]
    mapped = word_tokens([(w.start, w.end) for w in ws], spans)
    keep = [i for i, t in enumerate(mapped) if t]
    return _Window(chunk.index, ids, [mapped[i] for i in keep], [ws[i].raw for i in keep],
                   [ws[i].text for i in keep])


def _forward(model: LoadedModel, seqs: list[list[int]], batch_tokens: int) -> list[np.ndarray]:
    """Per sequence: pooled embedding (encoder), class probabilities (classifier) or per-position
    next-token loss (causal; entry t is the loss of token t given tokens < t, NaN for t = 0)."""
    import torch

    out: list[np.ndarray | None] = [None] * len(seqs)
    for batch in length_batches([len(q) for q in seqs], batch_tokens):
        padded = pad_batch([seqs[i] for i in batch], pad_id(model.tokenizer), model.info.device)
        input_ids, mask = padded.input_ids, padded.attention_mask
        with torch.inference_mode():
            res = model.model(input_ids=input_ids, attention_mask=mask)
        if model.kind == ModelKind.CLASSIFIER:
            vals = torch.softmax(res.logits.double(), -1).cpu().numpy()
            rows = [vals[b] for b in range(len(batch))]
        elif model.kind == ModelKind.CAUSAL:
            logp = torch.log_softmax(res.logits.double(), -1)
            nll = -logp[:, :-1].gather(-1, input_ids[:, 1:, None])[..., 0]  # loss of token t+1
            nll = torch.cat([torch.full_like(nll[:, :1], float("nan")), nll], 1).cpu().numpy()
            rows = [nll[b, : len(seqs[i])] for b, i in enumerate(batch)]
        else:
            hidden = res.last_hidden_state.double()
            m = mask[..., None].double()
            pooled = ((hidden * m).sum(1) / m.sum(1).clamp_min(1.0)).cpu().numpy()
            rows = [pooled[b] for b in range(len(batch))]
        for b, i in enumerate(batch):
            out[i] = rows[b]
    return out  # type: ignore[return-value]


def _shift(kind: str, original: np.ndarray, deleted: np.ndarray, kept: list[int], n_prefix: int) -> float:
    if kind == ModelKind.ENCODER:
        return cosine_shift(original, deleted)
    if kind == ModelKind.CLASSIFIER:
        k = int(np.argmax(original))
        return float(original[k] - deleted[k])
    # causal: content token j sits at n_prefix + j in the original and at n_prefix + (its rank among kept)
    before, after = [], []
    for pos, j in enumerate(kept):
        a, b = original[n_prefix + j], deleted[n_prefix + pos]
        if math.isfinite(a) and math.isfinite(b):
            before.append(a)
            after.append(b)
    return float(np.mean(after) - np.mean(before)) if before else 0.0


def window_shifts(result: AnalysisResult, model: LoadedModel, *, fraction: float = 0.1, draws: int = 5,
                  seed: int = 0, max_windows: int = 8, batch_tokens: int | None = None,
                  progress: Progress | None = None, memo: dict | None = None,
                  cancel: Cancel | None = None) -> list[WindowShift]:
    """Plan the windows, select the deletions and measure every shift (no store).

    `memo`: optional dict of model outputs by input ids, shared between calls on the same text (a
    benchmark comparing reductions re-uses the intact, random and longest-words runs of each window).
    """
    from .analysis import special_affixes

    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be between 0 and 1, not {fraction}")
    if draws < 1:
        raise ValueError("draws must be at least 1")
    prefix, suffix = special_affixes(model)
    budget = model.info.max_tokens - len(prefix) - len(suffix)
    batch_tokens = batch_tokens or default_batch_tokens(model.info.device)
    chosen = pick_windows(result.chunks, max_windows)
    plans = []
    for c in chosen:
        w = _window_inputs(result, model, c, budget)
        n = len(w.word_tokens)
        if n < 2:
            continue  # deleting the only word says nothing about which word matters
        k = deletion_count(n, fraction)
        selections = [top_selection(w.scores, k), *random_selections(n, k, draws, seed, w.chunk),
                      longest_selection(w.texts, k)]
        plans.append((w, k, selections))
    done, total = 0, len(plans)
    report(progress, cancel, 0, total)
    shifts = []
    for w, k, selections in plans:  # one window at a time: its variants share one padded batch
        pre, suf = list(prefix), list(suffix)
        seqs = [pre + w.ids + suf]
        kept_lists = []
        for sel in selections:
            gone = {t for i in sel for t in w.word_tokens[i]}
            kept = [j for j in range(len(w.ids)) if j not in gone]
            kept_lists.append(kept)
            seqs.append(pre + [w.ids[j] for j in kept] + suf)
        if memo is None:
            outs = _forward(model, seqs, max(batch_tokens, len(seqs[0])))
        else:
            keys = [tuple(q) for q in seqs]
            todo = list(dict.fromkeys(k for k in keys if k not in memo))
            for k, o in zip(todo, _forward(model, [list(k) for k in todo], max(batch_tokens, len(seqs[0])))):
                memo[k] = o
            outs = [memo[k] for k in keys]
        vals = [_shift(model.kind, outs[0], o, kept, len(pre)) for o, kept in zip(outs[1:], kept_lists)]
        shifts.append(WindowShift(w.chunk, len(w.word_tokens), k, vals[0], tuple(vals[1:-1]), vals[-1]))
        done += 1
        report(progress, cancel, done, total)
    return shifts


# ---------------------------------------------------------------------------------------------------- API
def faithfulness_key(result: AnalysisResult, *, fraction: float, draws: int, seed: int, max_windows: int) -> str:
    """Model identity + settings + document + parameters + the scores themselves."""
    raw = np.asarray([w.raw for w in result.words], dtype=np.float64).tobytes()
    spans = np.asarray([(w.start, w.end) for w in result.words], dtype=np.int64).tobytes()
    d = result.document
    return make_key("faithfulness", FAITHFULNESS_VERSION, result.model.identity, result.settings.key(),
                    d.sha256, str(len(d.text)), d.language, repr((fraction, draws, seed, max_windows)),
                    spans, raw)


def badge_key(result: AnalysisResult) -> str:
    """The store key of the badge's own deletion test (measure_faithfulness with its defaults): where an
    export looks for a figure it never computes."""
    kw = measure_faithfulness.__kwdefaults__ or {}
    return faithfulness_key(result, fraction=kw.get("fraction", 0.1), draws=kw.get("draws", 5),
                            seed=kw.get("seed", 0), max_windows=kw.get("max_windows", 8))


def measure_faithfulness(result: AnalysisResult, model: LoadedModel, *, fraction: float = 0.1, draws: int = 5,
                 seed: int = 0, max_windows: int = 8, store: ResultStore | None = None, use_store: bool = True,
                 batch_tokens: int | None = None, progress: Progress | None = None,
                 cancel: Cancel | None = None) -> Faithfulness:
    """The deletion test for one analysed document; cached, so a second call is instant.

    Cost: at most `max_windows` windows × (draws + 3) sequences of the model's window length, however
    long the document is (each window's variants go through the model as one padded batch).
    """
    if store is None and use_store:
        store = default_store()
    key = faithfulness_key(result, fraction=fraction, draws=draws, seed=seed, max_windows=max_windows)
    if store is not None:
        blob = store.get(key)
        if blob is not None:
            return Faithfulness.from_json(json.loads(blob.decode("utf-8")), cached=True)
    shifts = window_shifts(result, model, fraction=fraction, draws=draws, seed=seed, max_windows=max_windows,
                           batch_tokens=batch_tokens, progress=progress, cancel=cancel)
    s = result.settings
    f = summarize(shifts, method=str(s.method), fraction=fraction, draws=draws, seed=seed,
                  measure=MEASURES.get(model.kind, ""), layer=s.layer, head=s.head)
    if store is not None:
        store.put(key, json.dumps(f.to_json(digits=None)).encode("utf-8"), kind="faithfulness")
    return f
