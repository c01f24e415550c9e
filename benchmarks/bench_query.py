"""A new query over 50 analysed documents (run by hand; target ≤ 5 s warm on the 2-core dev machine).

Documents: the six US patents, the two Japanese patent excerpts, and 42 distinct segments (about 3,000
characters each, cut at line ends) of the statute, Aozora and JPO texts of ../shared/corpus. Timings:
  cold  – index_documents: every passage embedded by the model and stored (kind "embedding");
  warm  – rank_documents with a query never seen before: passages re-segmented, embeddings read from
          the store, only the query (and its claim elements) run through the model.

usage: python benchmarks/bench_query.py [--model ID|DIR] [--data-dir DIR] [--segment-chars N]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"
TARGET_S = 5.0
sys.path.insert(0, str(REPO))


def _segments(doc, size: int, count: int):
    from attn_core.document import document_from_text

    text, out, pos = doc.text, [], 0
    while pos < len(text) and len(out) < count:
        end = text.find("\n", pos + size)
        end = len(text) if end < 0 else end
        piece = text[pos:end]
        if piece.strip():
            out.append(document_from_text(piece, f"{doc.name}#{len(out) + 1}", doc.language))
        pos = end + 1
    return out


def build_documents(segment_chars: int):
    from attn_core import ingest_path

    docs = [ingest_path(p) for p in sorted((CORPUS / "en").glob("*.txt"))]
    docs += [ingest_path(p) for p in sorted((CORPUS / "ja").glob("ja_patent_excerpt_*.txt"))]
    long_texts = [ingest_path(CORPUS / "ja" / n) for n in (
        "ja_patent_act_tokkyoho_334AC0000000121.txt", "ja_aozora_tsumi_to_batsu_yonekawa_sjis.txt",
        "ja_aozora_shiki_rososhinkan_retsuden_sjis.txt", "ja_jpo_exam_guidelines_III-2-2_inventive_step.pypdf_extracted.txt")]
    pools = [_segments(d, segment_chars, 50) for d in long_texts]
    while len(docs) < 50 and any(pools):  # round robin, so every source contributes
        for pool in pools:
            if pool and len(docs) < 50:
                docs.append(pool.pop(0))
    assert len({d.sha256 for d in docs}) == len(docs) == 50, len(docs)
    return docs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--data-dir", default=None, help="result store folder (default: a fresh temporary one)")
    ap.add_argument("--segment-chars", type=int, default=3000)
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["CHUMOKU_DATA_DIR"] = a.data_dir or tempfile.mkdtemp(prefix="chumoku-bench-")
    import torch

    from attn_core import load_model
    from attn_core.claims import extract_claims, make_query
    from attn_core.retrieval import index_documents, rank_documents

    t = time.perf_counter()
    model = load_model(a.model)
    print(f"model {model.info.id} on {model.info.device}, {torch.get_num_threads()} threads, "
          f"loaded in {time.perf_counter() - t:.1f} s")
    docs = build_documents(a.segment_chars)
    chars = sum(d.chars for d in docs)
    print(f"documents: {len(docs)}, {chars:,} characters")

    t = time.perf_counter()
    index = index_documents(docs, model)
    cold = time.perf_counter() - t
    passages = sum(len(ix.spans) for ix in index)
    print(f"cold indexing: {cold:.1f} s for {passages:,} passages ({sum(not ix.cached for ix in index)} embedded)")

    sip = next(d for d in docs if d.name.startswith("US08930553"))
    queries = [("claim 1 of US08930553B2", make_query(extract_claims(sip)[0].text, "en")),
               ("free text", make_query("balloon catheter with an inverted tube connected to the outlet end")),
               ("Japanese claim", make_query(extract_claims(docs[6])[0].text, "ja"))]
    warm = []
    for label, q in queries:
        t = time.perf_counter()
        ranked = rank_documents(q, docs, model)  # reads the store; no index passed in
        dt = time.perf_counter() - t
        warm.append(dt)
        top = ", ".join(f"{r.document.name} {r.score:.3f}" for r in ranked[:3])
        print(f"warm query ({label}, {len(q.elements)} elements): {dt:.2f} s   top 3: {top}")
    worst = max(warm)
    print(f"new query over {len(docs)} analysed documents: worst {worst:.2f} s, target <= {TARGET_S:.0f} s: "
          f"{'PASS' if worst <= TARGET_S else 'FAIL'}")


if __name__ == "__main__":
    main()
