"""Read-first relevance benchmark: every ranking method and baseline on labels made by reading the documents.

Run by hand (it is a measurement, not a test): the numbers it prints go into the README and the issue note,
and `benchmarks/results/readfirst.json` keeps them machine-readable. Labels: tests/data/readfirst/ (its
README gives the format); documents: ../shared/corpus.

A. Claim task (English patents). The claims section is cut out of the document (attn_core.claims.
   without_claims), so claim 1 cannot find itself; the query is claim 1 with the labeller's elements. A
   passage's grade is the best grade any element gives its paragraph (its leading "[0023]" label); passages
   without a paragraph number (headings, the title block) are grade 0. Metrics per document and mean:
   nDCG@10 (linear gain = grade, log2 discount, the trec_eval `ndcg_cut` convention; the ideal ranking is
   the best ordering of the same passages, so a paragraph that segmentation split in two counts twice in
   both) and P@5 (share of the top 5 with grade >= 1).
B. Unguided task (English patents, whole document with claims). How many of the top 5 "read first"
   passages are core and how many boilerplate, against the labeller's lists. Ids: "[0023]" -> "0023",
   otherwise the section (TITLE/META/ABSTRACT/HEADING) from attn_core.sections, claims -> "CLAIM:N".
   Distinct ids are counted: a long claim split into two passages that both make the top 5 is one core
   item (the reviewer reads one claim), so the figure cannot be inflated by segmentation.
D. Unguided task, documents that are not patents (the Patent Act with its 附則, the JPO inventive-step
   guideline PDF, an Aozora classic, and the GPL-3 and Apache-2.0 texts Debian ships). Top 5 counts of
   core and boilerplate passages, as in B, against pooled labels matched by passage text.
C. Japanese questions -> Patent Act (main text, cut before the supplementary provisions 附則). A passage
   belongs to the article whose heading line (第…条(の…)) starts inside it, else to the nearest one before
   it; an article ranks where its best passage ranks. hit@3: an answering article (grade 2) among the
   articles of the top 3 passages; nDCG@10 over the article ranking. The English paraphrases of some
   questions test cross-lingual retrieval (cos-e5 and chumoku only, with random for scale).

Methods. `chumoku` is whatever `attn_core.Reader(...).read(doc, query).read_first()` returns: the product,
measured without knowing how it ranks (MiniLM for English patents, e5 for the statute; see
`product_ranking` for how the statute avoids an hour of attention). The others are fixed references: BM25
over the passages (the engine's lexical terms, or plain character bigrams for Japanese), cosine between
mean-pooled embeddings of the query and each passage embedded alone (MiniLM, and e5 with its "query: " /
"passage: " prefixes), `cos-minilm-index` (the same cosine over the vectors index_documents gives the
product, whatever its pooling), query-guided attention alone (the old product), unguided attention
without section weights, random order (mean of 20 seeded shuffles), document order, and "longest words"
(a passage's mean length of its 10 longest words: a no-model baseline that tracks technical density).

Caching: CHUMOKU_DATA_DIR defaults to benchmarks/.cache, so embeddings, attention chunks and the converted
e5 model persist between runs; a rerun only pays for what changed.

usage: python benchmarks/bench_readfirst.py [--only claim|unguided|general|ja] [--docs US08930553B2,...]
                                            [--corpus DIR] [--labels DIR] [--json OUT] [--ja-full-read]
"""
from __future__ import annotations

import argparse
import bisect
import inspect
import json
import math
import os
import re
import sys
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"
LABELS = REPO / "tests" / "data" / "readfirst"
RESULTS = REPO / "benchmarks" / "results" / "readfirst.json"
# Set before attn_core is imported: the store and the converted e5 folder live under the data dir.
os.environ.setdefault("CHUMOKU_DATA_DIR", str(REPO / "benchmarks" / ".cache"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # both models are offline ones; never wait on the hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(REPO))

import bm25s  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import attn_core  # noqa: E402
from attn_core import Reader, ingest_bytes, ingest_path, load_model, make_query  # noqa: E402
from attn_core.alignment import tokenize_texts  # noqa: E402
from attn_core.cache import data_dir, default_store, make_key  # noqa: E402
from attn_core.claims import without_claims  # noqa: E402
from attn_core.document import Document, document_from_text, sha256_hex  # noqa: E402
from attn_core.guided import guided_analyze  # noqa: E402
from attn_core.lexical import LexicalIndex  # noqa: E402
from attn_core.models import DEFAULT_MODEL_ID, LoadedModel  # noqa: E402
from attn_core.retrieval import embed_token_ids, index_documents  # noqa: E402
from attn_core.scoring import rank_passages  # noqa: E402
from attn_core.sections import classify_passages, supplementary_start  # noqa: E402
from attn_core.segment import KANJI_DIGITS, PassageSpan, passage_spans, word_spans  # noqa: E402

K_NDCG, K_P, K_TOP, K_HIT = 10, 5, 5, 3
RANDOM_SEEDS = 20
LONGEST_WORDS = 10
E5_QUERY, E5_PASSAGE = "query: ", "passage: "
PROBE_TEXT = "A balloon catheter has an inflatable balloon near its distal end."
SAME = 0.999  # cosine above which two embeddings of one text are the same computation

CLAIM_METHODS = ("chumoku", "bm25", "bm25-elements", "cos-minilm", "cos-minilm-index", "cos-e5", "attention",
                 "random", "longest-words")
UNGUIDED_METHODS = ("chumoku", "attention-only", "document-order", "random", "longest-words")
JA_METHODS = ("chumoku", "bm25", "bm25-char-bigrams", "cos-e5", "cos-minilm", "random")
JA_EN_METHODS = ("chumoku", "cos-e5", "random")

Order = list[int]  # passage indices, best first


# ============================================================================================ metrics
def dcg(gains: Sequence[float], k: int) -> float:
    """Σ gain / log2(rank + 1) over the first k (rank 1-based): the standard discount."""
    return sum(g / math.log2(i + 2) for i, g in enumerate(list(gains)[:k]))


def ndcg(ranked_gains: Sequence[float], pool_gains: Sequence[float], k: int = K_NDCG) -> float:
    """DCG of the ranking over the DCG of the best ordering of `pool_gains`; 0 when nothing is relevant."""
    ideal = dcg(sorted(pool_gains, reverse=True), k)
    return dcg(ranked_gains, k) / ideal if ideal > 0 else 0.0


def precision(ranked_gains: Sequence[float], k: int = K_P) -> float:
    """Share of the first k with grade >= 1 (k in the denominator even if fewer were ranked)."""
    return sum(1 for g in list(ranked_gains)[:k] if g >= 1) / k


def order_by(scores: Sequence[float] | np.ndarray) -> Order:
    """Indices best first; ties keep text order (so a method that says nothing falls back to document order)."""
    return [int(i) for i in np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")]


def random_orders(n: int) -> list[Order]:
    """The RANDOM_SEEDS seeded shuffles every random baseline averages over (same shuffles each run)."""
    return [[int(i) for i in np.random.default_rng(seed).permutation(n)] for seed in range(RANDOM_SEEDS)]


def mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


# ============================================================================================ passages
_PARAGRAPH = re.compile(r"^\[(\d{4,5})\]$")
_CLAIM_NUMBER = re.compile(r"^[ \t]*(\d{1,3})[ \t]*[.)][ \t]+", re.M)
_SECTION_ID = {"title": "TITLE", "meta": "META", "abstract": "ABSTRACT", "heading": "HEADING"}


def spans_of(doc: Document) -> list[PassageSpan]:
    """The passages every method ranks: the engine's own segmentation (the Reader's and the embeddings')."""
    return passage_spans(doc.text, doc.language, doc.paragraphs)


def paragraph_id(span: PassageSpan) -> str | None:
    """"[0023]" -> "0023", as the labels write paragraph ids; None for unnumbered passages."""
    m = _PARAGRAPH.match(span.label or "")
    return m.group(1) if m else None


def passage_ids(doc: Document, spans: Sequence[PassageSpan]) -> list[str | None]:
    """Label id of each passage for the unguided task: paragraph number, CLAIM:N, or the section id.

    A long claim split into several passages keeps its number in the continuation passages (the number
    is only written at its start)."""
    sections = classify_passages(doc.text, [(s.start, s.end) for s in spans])
    out: list[str | None] = []
    last_claim: str | None = None
    for span, section in zip(spans, sections):
        pid = paragraph_id(span)
        kind = str(section)
        if pid is None and kind in ("independent_claim", "dependent_claim"):
            # the number sits at a line start near the passage start ("CLAIMS\n1. A system …" included)
            m = _CLAIM_NUMBER.search(doc.text, span.start, min(span.end, span.start + 200))
            if m:
                last_claim = f"CLAIM:{int(m.group(1))}"
            pid = last_claim
        elif pid is None:
            pid = _SECTION_ID.get(kind)
        out.append(pid)
    return out


def passage_texts(doc: Document, spans: Sequence[PassageSpan]) -> list[str]:
    return [doc.text[s.start:s.end] for s in spans]


def map_to_spans(spans: Sequence[PassageSpan], starts: Sequence[int]) -> Order:
    """Index of the span holding each offset (the Reader's passages onto ours); -1 when none does.

    The Reader segments with the same function, so this is identity today; mapping by offset keeps the
    benchmark honest if the product ever merges, splits or drops (deduplicates) passages."""
    begins = [s.start for s in spans]
    out = []
    for off in starts:
        i = bisect.bisect_right(begins, off) - 1
        out.append(i if i >= 0 and spans[i].start <= off < max(spans[i].end, spans[i].start + 1) else -1)
    return out


def reader_order(result: Any, spans: Sequence[PassageSpan]) -> Order:
    """The product's read-first list as indices into our spans (each span once, first occurrence wins)."""
    seen: set[int] = set()
    out = []
    for i in map_to_spans(spans, [p.start for p in result.read_first()]):
        if i >= 0 and i not in seen:
            seen.add(i)
            out.append(i)
    return out


def plain_attention_order(result: Any, spans: Sequence[PassageSpan]) -> Order:
    """Passages ranked by their words' attention alone (scoring.rank_passages without section weights or
    duplicate removal): the attention baseline must stay plain attention whatever the product adds on top."""
    plain = rank_passages([(s.start, s.end, s.label, s.page) for s in spans], result.words)
    return order_by([-p.rank for p in plain])


def longest_words_scores(doc: Document, spans: Sequence[PassageSpan]) -> np.ndarray:
    """Mean length of each passage's LONGEST_WORDS longest words (fewer if it has fewer): no model at all."""
    words = word_spans(doc.text, doc.language)
    starts = [s for s, _ in words]
    out = np.zeros(len(spans))
    for i, sp in enumerate(spans):
        lo, hi = bisect.bisect_left(starts, sp.start), bisect.bisect_left(starts, sp.end)
        lengths = sorted((e - s for s, e in words[lo:hi]), reverse=True)[:LONGEST_WORDS]
        out[i] = mean(lengths) if lengths else 0.0
    return out


# ============================================================================================ models
@dataclass
class Models:
    """The two offline models, loaded once on first use (a section that needs neither loads neither)."""

    notes: list[str]
    _minilm: LoadedModel | None = None
    _e5: LoadedModel | None = None

    @property
    def minilm(self) -> LoadedModel:
        if self._minilm is None:
            self._minilm = load_model(DEFAULT_MODEL_ID)
        return self._minilm

    @property
    def e5(self) -> LoadedModel:
        """multilingual-e5-small by its offline id; if load_model does not know the id yet (it then falls
        back to MiniLM), from the folder attn_core.multilingual converts into the data dir."""
        if self._e5 is None:
            from attn_core.multilingual import MULTILINGUAL_MODEL_ID, ensure_multilingual_folder

            model = load_model(MULTILINGUAL_MODEL_ID)
            if model.info.fallback_reason or "e5" not in model.info.identity.lower():
                self.notes.append(f"load_model({MULTILINGUAL_MODEL_ID!r}) fell back "
                                  f"({model.info.fallback_reason}); loaded the converted folder instead")
                model = load_model(str(ensure_multilingual_folder(data_dir())))
            self._e5 = model
        return self._e5


def _reference_embedding(model: LoadedModel, text: str) -> np.ndarray:
    """The textbook sentence embedding of one short text (tokenizer specials, mean over all positions,
    L2-normalised), computed without attn_core: what the library's embeddings are checked against."""
    enc = model.tokenizer(text, return_tensors="pt", truncation=True, max_length=model.info.max_tokens)
    enc = {k: v.to(model.info.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
    with torch.inference_mode():
        h = model.model.base_model(**enc).last_hidden_state.float()
    m = enc["attention_mask"].to(h.dtype)[:, :, None]
    v = ((h * m).sum(1) / m.sum(1)).cpu().numpy()[0]
    return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12))


_EMBED_PARAMS = inspect.signature(embed_token_ids).parameters


def _embed_raw(model: LoadedModel, texts: Sequence[str]) -> np.ndarray:
    """embed_token_ids over texts that already carry whatever prefix they need, asking the library not to
    add a passage prefix of its own (its keyword for that has changed while this was written)."""
    kw: dict[str, Any] = {}
    if "affixes" in _EMBED_PARAMS:
        kw["affixes"] = "query"
    elif "passage" in _EMBED_PARAMS:
        kw["passage"] = False
    return embed_token_ids(model, tokenize_texts(model.tokenizer, list(texts)), **kw)


class Embedder:
    """Query and passage vectors with exactly one model-appropriate prefix, checked once per model.

    Why the checks: the engine is adding e5 prefixes in several places at once (index_documents,
    embed_token_ids, the Reader). Embedding a probe both ways and comparing with a reference computed
    here shows what the library does today, so the benchmark neither drops nor doubles "passage: "."""

    def __init__(self, model: LoadedModel, prefixed: bool, notes: list[str]) -> None:
        self.model = model
        self.query_prefix = E5_QUERY if prefixed else ""
        self.passage_prefix = E5_PASSAGE if prefixed else ""
        self.notes = notes
        probe = _embed_raw(model, [self.query_prefix + PROBE_TEXT])[0]
        self.raw_ok = _cos(probe, _reference_embedding(model, self.query_prefix + PROBE_TEXT)) > SAME
        if not self.raw_ok:
            notes.append(f"{model.info.id}: embed_token_ids does not match a plain mean-pooled embedding; "
                         "the benchmark embeds queries and passages itself")
        doc = document_from_text(PROBE_TEXT, "probe.txt", "en")
        indexed = index_documents([doc], model, use_store=False)[0].vectors[0]
        want = _reference_embedding(model, self.passage_prefix + PROBE_TEXT)
        self.index_ok = _cos(indexed, want) > SAME
        if not self.index_ok:
            other = _reference_embedding(model, PROBE_TEXT if prefixed else E5_PASSAGE + PROBE_TEXT)
            what = "adds no passage prefix" if _cos(indexed, other) > SAME else "embeds passages differently"
            notes.append(f"{model.info.id}: index_documents {what} than a plain mean-pooled embedding of the "
                         f"passage alone; the benchmark embeds passages itself (prefix {self.passage_prefix!r})")

    def _own(self, texts: Sequence[str]) -> np.ndarray:
        if self.raw_ok:
            return _embed_raw(self.model, texts)
        return np.stack([_reference_embedding(self.model, t) for t in texts])

    def queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._own([self.query_prefix + t for t in texts])

    def passages(self, doc: Document, spans: Sequence[PassageSpan]) -> np.ndarray:
        """[P, D] unit vectors, from index_documents (its store cache) when it embeds as wanted, else here
        with the prefix, cached in the same store under a key of our own."""
        if self.index_ok:
            ix = index_documents([doc], self.model)[0]
            if len(ix.spans) == len(spans) and all(a.start == b.start for a, b in zip(ix.spans, spans)):
                return ix.vectors
            self.notes.append(f"{doc.name}: index_documents segmented differently; embedded here")
        texts = [self.passage_prefix + t for t in passage_texts(doc, spans)]
        store = default_store()
        key = make_key("bench-readfirst-passages", "1", self.model.info.identity, *texts)
        blob = store.get(key)
        if blob is not None:
            n, d = np.frombuffer(blob, np.int32, 2)
            vec = np.frombuffer(blob, np.float16, int(n) * int(d), 8).reshape(n, d).astype(np.float32)
            if vec.shape[0] == len(texts):
                return vec
        vec = self._own(texts)
        store.put(key, np.array(vec.shape, np.int32).tobytes() + vec.astype(np.float16).tobytes(),
                  kind="embedding")
        return vec


def index_vectors(model: LoadedModel, doc: Document, spans: Sequence[PassageSpan]) -> np.ndarray:
    """The passage vectors the product itself uses (index_documents, whatever its pooling is today: it
    reads MiniLM passages inside the analysis windows), beside `cos-minilm`'s passages embedded alone."""
    ix = index_documents([doc], model)[0]
    if len(ix.spans) != len(spans) or any(a.start != b.start for a, b in zip(ix.spans, spans)):
        raise RuntimeError(f"{doc.name}: index_documents segments differently from passage_spans")
    return ix.vectors


# ============================================================================================ tables
def fmt(v: float | None, width: int = 6, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—".rjust(width)
    return f"{v:.{digits}f}".rjust(width)


def width(text: str) -> int:
    """Columns a string takes in a terminal: wide (CJK) characters take two, so article ids like 17の2 align."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def print_table(title: str, rows: list[tuple[str, list[str]]], header: list[str], first: int = 16) -> None:
    """A plain fixed-width table (copy-pasteable into the README inside a code block)."""
    widths = [max(width(h), *(width(r[1][i]) for r in rows)) if rows else width(h) for i, h in enumerate(header)]
    first = max(first, *(width(r[0]) for r in rows)) if rows else first
    print(f"\n{title}")
    print("  " + " " * first + "  " + "  ".join(" " * (w - width(h)) + h for h, w in zip(header, widths)))
    for name, cells in rows:
        print("  " + name + " " * (first - width(name)) + "  "
              + "  ".join(" " * (w - width(c)) + c for c, w in zip(cells, widths)))


# ============================================================================================ A. claim task
def claim_task(labels: list[dict], corpus: Path, models: Models, reader: Reader, notes: list[str]) -> dict:
    """Claim 1 (claims removed from the document) against its description paragraphs, every method."""
    per_doc: dict[str, dict[str, dict[str, float]]] = {}
    timings: dict[str, float] = {m: 0.0 for m in CLAIM_METHODS}
    e5 = Embedder(models.e5, True, notes)
    minilm = Embedder(models.minilm, False, notes)
    for label in labels:
        name = Path(label["document"]).stem
        doc = without_claims(ingest_path(corpus / label["document"]))
        spans = spans_of(doc)
        texts = passage_texts(doc, spans)
        grade_of: dict[str, int] = {}
        for el in label["elements"]:
            for pid, g in el["paragraphs"].items():
                grade_of[pid] = max(grade_of.get(pid, 0), int(g))
        grades = [grade_of.get(paragraph_id(s) or "", 0) for s in spans]
        missing = sorted(set(grade_of) - {paragraph_id(s) for s in spans})
        if missing:
            notes.append(f"{name}: labelled paragraphs not found as passages: {', '.join(missing)}")
        elements = [e["text"] for e in label["elements"]]
        query = make_query(label["claim"]).with_elements(elements)

        orders: dict[str, list[Order]] = {}

        def timed(method: str, fn: Callable[[], list[Order]]) -> None:
            t0 = time.perf_counter()
            orders[method] = fn()
            timings[method] += time.perf_counter() - t0

        timed("chumoku", lambda: [reader_order(reader.read(doc, query), spans)])
        lex = LexicalIndex(texts, doc.language)
        timed("bm25", lambda: [order_by(lex.scores(label["claim"]))])

        def bm25_elements() -> list[Order]:
            total = np.zeros(len(spans))
            for e in elements:
                s = lex.scores(e).astype(np.float64)
                total += s / s.max() if s.max() > 0 else s
            return [order_by(total)]

        timed("bm25-elements", bm25_elements)
        timed("cos-minilm", lambda: [order_by(minilm.passages(doc, spans) @ minilm.queries([label["claim"]])[0])])
        timed("cos-minilm-index", lambda: [order_by(index_vectors(models.minilm, doc, spans)
                                                     @ minilm.queries([label["claim"]])[0])])
        timed("cos-e5", lambda: [order_by(e5.passages(doc, spans) @ e5.queries([label["claim"]])[0])])
        timed("attention", lambda: [plain_attention_order(guided_analyze(doc, models.minilm, query), spans)])
        timed("random", lambda: random_orders(len(spans)))
        timed("longest-words", lambda: [order_by(longest_words_scores(doc, spans))])

        row: dict[str, dict[str, float]] = {}
        for method in CLAIM_METHODS:
            runs = [[grades[i] for i in o] for o in orders[method]]
            row[method] = {"ndcg@10": mean([ndcg(r, grades) for r in runs]),
                           "p@5": mean([precision(r) for r in runs])}
        row["_info"] = {"passages": len(spans), "graded": sum(1 for g in grades if g),  # type: ignore[dict-item]
                        "chars": len(doc.text)}
        per_doc[name] = row
        print(f"  {name}: {len(spans)} passages, {row['_info']['graded']} graded — "
              + ", ".join(f"{m} {row[m]['ndcg@10']:.3f}" for m in CLAIM_METHODS), flush=True)
    summary = {m: {k: mean([per_doc[d][m][k] for d in per_doc]) for k in ("ndcg@10", "p@5")} for m in CLAIM_METHODS}
    for metric, title in (("ndcg@10", "nDCG@10"), ("p@5", "P@5")):
        rows = [(d, [fmt(per_doc[d][m][metric]) for m in CLAIM_METHODS]) for d in per_doc]
        rows.append(("mean", [fmt(summary[m][metric]) for m in CLAIM_METHODS]))
        print_table(f"A. Claim task — {title} (claim 1 vs description, claims removed)", rows, list(CLAIM_METHODS))
    return {"per_document": per_doc, "mean": summary, "seconds_per_method": timings}


# ============================================================================================ B. unguided task
def unguided_orders(doc: Document, spans: Sequence[PassageSpan], result: Any) -> dict[str, list[Order]]:
    """Every method's passage order without a query (tasks B and D): the product, its plain attention, and
    the no-model baselines (random: 20 seeded shuffles)."""
    return {
        "chumoku": [reader_order(result, spans)],
        "attention-only": [plain_attention_order(result, spans)],
        "document-order": [list(range(len(spans)))],
        "random": random_orders(len(spans)),
        "longest-words": [order_by(longest_words_scores(doc, spans))],
    }


def unguided_task(labels: list[dict], corpus: Path, models: Models, reader: Reader, notes: list[str]) -> dict:
    """Top 5 read-first passages of the whole patent without a query: core and boilerplate counts."""
    per_doc: dict[str, dict[str, Any]] = {}
    for label in labels:
        name = Path(label["document"]).stem
        doc = ingest_path(corpus / label["document"])
        spans = spans_of(doc)
        ids = passage_ids(doc, spans)
        core, boiler = set(label["core"]), set(label["boilerplate"])
        result = reader.read(doc)
        orders = unguided_orders(doc, spans, result)
        row: dict[str, Any] = {}
        for method in UNGUIDED_METHODS:
            tops = [[ids[i] for i in o[:K_TOP]] for o in orders[method]]
            # distinct ids: a claim or paragraph that segmentation split in two is one thing to read
            row[method] = {"core": mean([len(set(t) & core) for t in tops]),
                           "boilerplate": mean([len(set(t) & boiler) for t in tops])}
            if method != "random":
                row[method]["top5"] = tops[0]
        per_doc[name] = row
        print(f"  {name}: chumoku top 5 = {row['chumoku']['top5']}", flush=True)
    summary = {m: {k: mean([per_doc[d][m][k] for d in per_doc]) for k in ("core", "boilerplate")}
               for m in UNGUIDED_METHODS}
    rows = [(d, [f"{fmt(per_doc[d][m]['core'], 3, 1)} / {fmt(per_doc[d][m]['boilerplate'], 3, 1)}"
                 for m in UNGUIDED_METHODS]) for d in per_doc]
    rows.append(("mean", [f"{fmt(summary[m]['core'], 3, 1)} / {fmt(summary[m]['boilerplate'], 3, 1)}"
                          for m in UNGUIDED_METHODS]))
    print_table("B. Unguided task — top 5: core / boilerplate (target ≥ 3 / 0)", rows, list(UNGUIDED_METHODS))
    for d in per_doc:
        print(f"  {d} chumoku top 5: {per_doc[d]['chumoku']['top5']}")
    return {"per_document": per_doc, "mean": summary}


# ============================================================================================ D. not patents
def general_document(label: dict, corpus: Path) -> Document | None:
    """The labelled document: a corpus path, or an absolute system path (Debian's licence texts, read as
    .txt whatever their name); None when it is not on this machine."""
    path = Path(label["document"])
    path = path if path.is_absolute() else corpus / path
    if not path.is_file():
        return None
    if path.suffix.lower() in (".txt", ".pdf"):
        return ingest_path(path)
    return ingest_bytes(path.read_bytes(), path.name + ".txt")


def general_task(labels_dir: Path, corpus: Path, models: Models, notes: list[str]) -> dict:
    """Top 5 read-first passages of documents that are not patents, without a query: core / boilerplate.

    The labels were made by pooling (the top 10 of every method here and the top 5 of each random shuffle,
    judged blind, in random order, by reading; tests/data/readfirst/README.md). A passage is matched by its
    whitespace-normalised text; one no judge saw counts as "unjudged", printed so the figure cannot hide it."""
    per_doc: dict[str, dict[str, Any]] = {}
    for f in sorted(labels_dir.glob("general_*.json")):
        label = json.loads(f.read_text(encoding="utf-8"))
        doc = general_document(label, corpus)
        if doc is None:
            notes.append(f"general: {label['document']} is not on this machine; skipped")
            continue
        grades = {p["text"]: p["grade"] for p in label["passages"]}
        spans = spans_of(doc)
        texts = [" ".join(doc.text[s.start:s.end].split()) for s in spans]
        result = Reader(models.e5 if doc.language == "ja" else models.minilm).read(doc)
        orders = unguided_orders(doc, spans, result)
        row: dict[str, Any] = {}
        for method in UNGUIDED_METHODS:
            tops = [[grades.get(texts[i], "unjudged") for i in o[:K_TOP]] for o in orders[method]]
            row[method] = {k: mean([t.count(k) for t in tops]) for k in ("core", "boilerplate", "unjudged")}
        name = f.stem.removeprefix("general_") + (" (held out)" if label.get("held_out") else "")
        per_doc[name] = row
        top = orders["chumoku"][0][:K_TOP]
        print(f"  {name}: chumoku top 5 = {[texts[i][:24] for i in top]}", flush=True)
    summary = {m: {k: mean([per_doc[d][m][k] for d in per_doc]) for k in ("core", "boilerplate", "unjudged")}
               for m in UNGUIDED_METHODS}
    held_out = [d for d in per_doc if d.endswith("(held out)")]
    held_summary = {m: {k: mean([per_doc[d][m][k] for d in held_out]) for k in ("core", "boilerplate", "unjudged")}
                    for m in UNGUIDED_METHODS} if held_out else None

    def cell(v: dict) -> str:
        return f"{fmt(v['core'], 3, 1)} / {fmt(v['boilerplate'], 3, 1)}" + (
            f" ({fmt(v['unjudged'], 3, 1)}?)" if v["unjudged"] else "")

    rows = [(d, [cell(per_doc[d][m]) for m in UNGUIDED_METHODS]) for d in per_doc]
    rows.append(("mean", [cell(summary[m]) for m in UNGUIDED_METHODS]))
    if held_summary:
        rows.append(("mean, held out", [cell(held_summary[m]) for m in UNGUIDED_METHODS]))
    print_table("D. Not patents, unguided — top 5: core / boilerplate (unjudged?)", rows, list(UNGUIDED_METHODS))
    return {"per_document": per_doc, "mean": summary, "mean_held_out": held_summary}


# ============================================================================================ C. Japanese statute
_NUMERAL = KANJI_DIGITS
_ARTICLE = re.compile(rf"^第([{_NUMERAL}]+)条((?:の[{_NUMERAL}]+)*)", re.M)
_DIGITS = {c: i for i, c in enumerate("〇一二三四五六七八九")}
_UNITS = {"十": 10, "百": 100, "千": 1000}


def kanji_number(text: str) -> int:
    """二百四 -> 204, 十 -> 10, 二十九 -> 29 (the positional forms statutes use for article numbers)."""
    total, digit = 0, 0
    for ch in text:
        if ch in _DIGITS:
            digit = _DIGITS[ch]
        else:
            total += (digit or 1) * _UNITS[ch]
            digit = 0
    return total + digit


def article_id(match: re.Match) -> str:
    """第二十九条の二 -> "29の2", 第百五条の二の二 -> "105の2の2" (the labels' spelling)."""
    branches = [kanji_number(b) for b in match.group(2).split("の") if b]
    return "の".join([str(kanji_number(match.group(1)))] + [str(b) for b in branches])


def main_text(doc: Document) -> Document:
    """The statute without its supplementary provisions: cut at the first 附則 line after article 1 (the
    table of contents lists 附則 too, before any article)."""
    cut = supplementary_start(doc.text)
    if cut is None:
        return doc
    text = doc.text[:cut].rstrip() + "\n"
    return replace(doc, text=text, sha256=sha256_hex(text.encode("utf-8")),
                   paragraphs=tuple(p for p in doc.paragraphs if p.end <= len(text)),
                   notes=doc.notes + ("supplementary provisions removed",))


def passage_articles(doc: Document, spans: Sequence[PassageSpan]) -> list[str | None]:
    """The article of each passage: the first article heading starting inside it (a caption such as
    （定義） is joined to the sentence that opens the article), else the nearest one before it."""
    heads = [(m.start(), article_id(m)) for m in _ARTICLE.finditer(doc.text)]
    starts = [h[0] for h in heads]
    out: list[str | None] = []
    for sp in spans:
        k = bisect.bisect_left(starts, sp.start)
        if k < len(heads) and heads[k][0] < sp.end:
            out.append(heads[k][1])
        else:
            out.append(heads[k - 1][1] if k > 0 else None)
    return out


def char_bigrams(text: str) -> list[str]:
    """Every overlapping pair of non-space characters after NFKC: a tokenizer that knows no Japanese."""
    s = re.sub(r"\s+", "", unicodedata.normalize("NFKC", text))
    return [s[i:i + 2] for i in range(len(s) - 1)] or ([s] if s else [])


class CharBigramBM25:
    """bm25s over character bigrams (same k1, b and Lucene variant as attn_core.lexical)."""

    def __init__(self, passages: Sequence[str]) -> None:
        from attn_core import lexical

        self.size = len(passages)
        self.bm25 = bm25s.BM25(k1=lexical.K1, b=lexical.B, method=lexical.METHOD)
        self.bm25.index([char_bigrams(p) for p in passages], show_progress=False)

    def scores(self, query: str) -> np.ndarray:
        vocab = self.bm25.vocab_dict
        ids = list(dict.fromkeys(vocab[t] for t in char_bigrams(query) if t in vocab))
        if not ids:
            return np.zeros(self.size, dtype=np.float32)
        return np.asarray(self.bm25.get_scores_from_ids(ids), dtype=np.float32)


def article_metrics(order: Order, articles: Sequence[str | None], wanted: dict[str, int]) -> dict[str, float]:
    """hit@3 over the top 3 passages' articles and nDCG@10 over the article ranking (best passage first)."""
    top = {articles[i] for i in order[:K_HIT]}
    hit = float(any(wanted.get(a or "", 0) >= 2 for a in top))
    ranking: list[str] = []
    seen: set[str] = set()
    for i in order:
        a = articles[i]
        if a is not None and a not in seen:
            seen.add(a)
            ranking.append(a)
    return {"hit@3": hit, "ndcg@10": ndcg([wanted.get(a, 0) for a in ranking], list(wanted.values()))}


def product_ranking(reader: Reader, doc: Document, probe_question: str, full_read: bool,
                    notes: list[str]) -> Callable[[str], Order]:
    """How `chumoku` ranks the statute's passages for a question.

    Reader.read(doc, query) also computes query-guided attention over every chunk (for word shading):
    about 2–3 minutes per question over the ~110k-character main text on 2 cores, most of an hour for all
    questions. Its passage order comes from Reader.relevance(...).order() (the hybrid), which is cheap. So
    unless --ja-full-read is given, this checks on the first articles (one model window's worth of work
    for each of a few chunks) that read() ranks exactly as relevance() does and then uses relevance();
    when the check fails, or the Reader has no relevance(), it falls back to the full read()."""
    spans = spans_of(doc)

    def read(question: str) -> Order:
        return reader_order(reader.read(doc, make_query(question)), spans)

    if full_read or not callable(getattr(reader, "relevance", None)):
        if not full_read:
            notes.append("statute: Reader has no relevance(); chumoku ran the full Reader.read (slow)")
        return read
    cut = doc.text.find("\n", 6000)
    text = doc.text[:cut + 1] if cut > 0 else doc.text
    small = replace(doc, text=text, sha256=sha256_hex(text.encode("utf-8")), paragraphs=())
    small_spans = spans_of(small)
    q = make_query(probe_question)
    via_read = reader_order(reader.read(small, q), small_spans)
    via_relevance = [int(i) for i in reader.relevance(small, q).order()]
    if via_read != via_relevance:
        notes.append("statute: Reader.read does not rank as Reader.relevance().order() on the first articles; "
                     "chumoku ran the full Reader.read (slow)")
        return read
    notes.append(f"statute: chumoku = Reader.relevance(doc, query).order(), checked equal to Reader.read's "
                 f"read-first order on the first {len(small_spans)} passages (use --ja-full-read to run read())")

    def relevance(question: str) -> Order:
        return [int(i) for i in reader.relevance(doc, make_query(question)).order()]

    return relevance


def statute_task(corpus: Path, labels_dir: Path, models: Models, notes: list[str],
                 full_read: bool = False) -> dict:
    """Japanese (and English) questions against the Patent Act's articles."""
    ja = json.loads((labels_dir / "ja_patent_act_questions.json").read_text(encoding="utf-8"))
    en_path = labels_dir / "ja_patent_act_questions_en.json"
    en = json.loads(en_path.read_text(encoding="utf-8")) if en_path.exists() else {"questions": []}
    full = ingest_path(corpus / ja["document"])
    doc = main_text(full)
    spans = spans_of(doc)
    texts = passage_texts(doc, spans)
    articles = passage_articles(doc, spans)
    known = set(a for a in articles if a)
    for q in ja["questions"] + en["questions"]:
        for a in q["articles"]:
            if a not in known:
                notes.append(f"statute: labelled article {a} has no passage in the main text")
    print(f"  main text {len(doc.text):,} of {len(full.text):,} chars, {len(spans)} passages, "
          f"{len(known)} articles", flush=True)

    t0 = time.perf_counter()
    e5 = Embedder(models.e5, True, notes)
    minilm = Embedder(models.minilm, False, notes)
    e5_passages = e5.passages(doc, spans)
    minilm_passages = minilm.passages(doc, spans)
    lex = LexicalIndex(texts, "ja")
    bigrams = CharBigramBM25(texts)
    print(f"  indexes ready in {time.perf_counter() - t0:.1f} s", flush=True)
    reader = Reader(models.e5)
    product = product_ranking(reader, doc, ja["questions"][0]["question"], full_read, notes)
    timings: dict[str, float] = {}

    def run(questions: list[dict], methods: Sequence[str]) -> dict:
        per_q: list[dict[str, Any]] = []
        for n, q in enumerate(questions, 1):
            text, wanted = q["question"], {k: int(v) for k, v in q["articles"].items()}
            row: dict[str, Any] = {"question": text, "articles": wanted}
            for method in methods:
                t = time.perf_counter()
                if method == "chumoku":
                    orders = [product(text)]
                elif method == "bm25":
                    orders = [order_by(lex.scores(text))]
                elif method == "bm25-char-bigrams":
                    orders = [order_by(bigrams.scores(text))]
                elif method == "cos-e5":
                    orders = [order_by(e5_passages @ e5.queries([text])[0])]
                elif method == "cos-minilm":
                    orders = [order_by(minilm_passages @ minilm.queries([text])[0])]
                else:
                    orders = random_orders(len(spans))
                timings[method] = timings.get(method, 0.0) + time.perf_counter() - t
                ms = [article_metrics(o, articles, wanted) for o in orders]
                row[method] = {k: mean([m[k] for m in ms]) for k in ("hit@3", "ndcg@10")}
                if method != "random":
                    row[method]["top3"] = [articles[i] for i in orders[0][:K_HIT]]
            per_q.append(row)
            print(f"    q{n}: " + ", ".join(f"{m} {row[m]['hit@3']:.0f}/{row[m]['ndcg@10']:.2f}" for m in methods),
                  flush=True)
        summary = {m: {k: mean([r[m][k] for r in per_q]) for k in ("hit@3", "ndcg@10")} for m in methods}
        return {"per_question": per_q, "mean": summary}

    out = {"passages": len(spans), "chars": len(doc.text)}
    out["ja"] = run(ja["questions"], JA_METHODS)
    out["en"] = run(en["questions"], JA_EN_METHODS)
    out["seconds_per_method"] = timings
    for key, methods, title in (("ja", JA_METHODS, "Japanese questions"),
                                ("en", JA_EN_METHODS, "English questions (cross-lingual)")):
        rows = []
        for n, r in enumerate(out[key]["per_question"], 1):
            wanted = ",".join(a for a, g in r["articles"].items() if g >= 2)
            rows.append((f"q{n} ({wanted})", [f"{r[m]['hit@3']:.2f} / {r[m]['ndcg@10']:.3f}" for m in methods]))
        rows.append(("mean", [f"{out[key]['mean'][m]['hit@3']:.2f} / {out[key]['mean'][m]['ndcg@10']:.3f}"
                              for m in methods]))
        print_table(f"C. Patent Act — {title}: hit@3 / nDCG@10 (articles)", rows, list(methods))
    return out


# ============================================================================================ main
def load_labels(labels_dir: Path, docs: Sequence[str] | None) -> list[dict]:
    files = sorted(labels_dir.glob("US*.json"))
    if docs:
        wanted = {d.strip() for d in docs if d.strip()}
        files = [f for f in files if f.stem in wanted]
        missing = wanted - {f.stem for f in files}
        if missing:
            raise SystemExit(f"no labels for: {', '.join(sorted(missing))}")
    return [json.loads(f.read_text(encoding="utf-8")) for f in files]


def print_summary(out: dict) -> None:
    """One table per task with every method: the figures that go into the README."""
    if "claim" in out:
        m = out["claim"]["mean"]
        print_table(f"SUMMARY A. Claim task ({len(out['claim']['per_document'])} patents)",
                    [(k, [fmt(v["ndcg@10"]), fmt(v["p@5"])]) for k, v in m.items()], ["nDCG@10", "P@5"])
    if "unguided" in out:
        m = out["unguided"]["mean"]
        print_table(f"SUMMARY B. Unguided top 5 ({len(out['unguided']['per_document'])} patents)",
                    [(k, [fmt(v["core"], 5, 2), fmt(v["boilerplate"], 5, 2)]) for k, v in m.items()],
                    ["core", "boilerplate"])
    if "general" in out:
        m = out["general"]["mean"]
        print_table(f"SUMMARY D. Not patents, unguided top 5 ({len(out['general']['per_document'])} documents)",
                    [(k, [fmt(v["core"], 5, 2), fmt(v["boilerplate"], 5, 2), fmt(v["unjudged"], 5, 2)])
                     for k, v in m.items()], ["core", "boilerplate", "unjudged"])
    if "ja" in out:
        for key, title in (("ja", "Japanese questions"), ("en", "English questions")):
            m = out["ja"][key]["mean"]
            print_table(f"SUMMARY C. Patent Act, {title} ({len(out['ja'][key]['per_question'])})",
                        [(k, [fmt(v["hit@3"], 5, 2), fmt(v["ndcg@10"])]) for k, v in m.items()],
                        ["hit@3", "nDCG@10"])


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--only", choices=("claim", "unguided", "general", "ja"), help="run one section")
    ap.add_argument("--docs", help="comma-separated patent ids (label file stems) for sections A and B")
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    ap.add_argument("--labels", type=Path, default=LABELS)
    ap.add_argument("--json", type=Path, default=RESULTS, help="where to write the results")
    ap.add_argument("--ja-full-read", action="store_true",
                    help="section C: rank with the full Reader.read (query-guided attention over the whole act, "
                         "most of an hour on 2 cores) instead of the Reader's relevance ranking it checks once")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, os.cpu_count() or 1))

    notes: list[str] = []
    models = Models(notes)
    sections = [args.only] if args.only else ["claim", "unguided", "general", "ja"]
    labels = load_labels(args.labels, args.docs.split(",") if args.docs else None) \
        if set(sections) & {"claim", "unguided"} else []
    # A partial run (--only/--docs) overwrites the file too; meta says what was run and when.
    out: dict[str, Any] = {"meta": {"argv": list(sys.argv[1:] if argv is None else argv),
                                    "sections": sections, "docs": [Path(lb["document"]).stem for lb in labels],
                                    "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                    "data_dir": str(data_dir()), "corpus": str(args.corpus),
                                    "attn_core": str(Path(attn_core.__file__).parent),
                                    "torch_threads": torch.get_num_threads(), "seconds": {}}}
    started = time.perf_counter()
    for section in sections:
        t0 = time.perf_counter()
        print(f"\n=== {section} ===", flush=True)
        if section == "claim":
            out["claim"] = claim_task(labels, args.corpus, models, Reader(models.minilm), notes)
        elif section == "unguided":
            out["unguided"] = unguided_task(labels, args.corpus, models, Reader(models.minilm), notes)
        elif section == "general":
            out["general"] = general_task(args.labels, args.corpus, models, notes)
        else:
            out["ja"] = statute_task(args.corpus, args.labels, models, notes, args.ja_full_read)
        out["meta"]["seconds"][section] = round(time.perf_counter() - t0, 1)
        print(f"--- {section}: {time.perf_counter() - t0:.1f} s", flush=True)
    out["meta"]["models"] = {k: m.info.identity for k, m in (("minilm", models._minilm), ("e5", models._e5)) if m}
    out["meta"]["notes"] = list(dict.fromkeys(notes))
    print_summary(out)
    if out["meta"]["notes"]:
        print("\nNotes:")
        for n in out["meta"]["notes"]:
            print(f"  - {n}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"\nTotal {time.perf_counter() - started:.1f} s; results in {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
