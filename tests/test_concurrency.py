"""Nothing lost: 8 analyses at once through the real code path, and a process killed mid-analysis resumes."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from conftest import EN_TEXT, JA_TEXT, REPO

from attn_core import ResultStore, analyze, document_from_text


def _doc(i: int, lang: str):
    base = EN_TEXT if lang == "en" else JA_TEXT
    text = "".join(f"{base}{'part' if lang == 'en' else '第'} {i}-{k}.\n" for k in range(3))
    return document_from_text(text, f"{lang}-{i}.txt")


def test_eight_simultaneous_analyses_are_correct(en_bert, ja_bert, tmp_path):
    jobs = [(_doc(i, "en"), en_bert) for i in range(4)] + [(_doc(i, "ja"), ja_bert) for i in range(4)]
    expected = [analyze(d, m, use_store=False) for d, m in jobs]
    store = ResultStore(tmp_path / "shared.sqlite")
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(lambda job: analyze(job[0], job[1], store=store), jobs))
    for (doc, _), e, g in zip(jobs, expected, got):
        assert g.document.name == doc.name
        assert [w.text for w in g.words] == [w.text for w in e.words]
        np.testing.assert_allclose([t.score for t in g.tokens], [t.score for t in e.tokens], rtol=1e-4, atol=1e-7)
        assert all(doc.text[w.start:w.end] == w.text for w in g.words)


def test_killed_analysis_resumes_without_recomputing(en_bert_dir, tmp_path):
    store_path = tmp_path / "s.sqlite"
    text = "".join(f"{EN_TEXT} part {k}.\n" for k in range(12))
    (tmp_path / "doc.txt").write_text(text, encoding="utf-8")
    script = textwrap.dedent(f"""
        import sys, time
        from attn_core import ResultStore, analyze, document_from_text, load_model
        m = load_model({str(en_bert_dir)!r})
        doc = document_from_text(open({str(tmp_path / 'doc.txt')!r}, encoding='utf-8').read(), 'doc.txt')
        def progress(done, total):
            print(done, total, flush=True)
            if done: time.sleep(60)  # parked mid-analysis until killed
        analyze(doc, m, store=ResultStore({str(store_path)!r}), progress=progress, batch_tokens=128)
    """)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        done = 0
        for line in proc.stdout:
            done, total = map(int, line.split())
            if done:
                break
        assert 0 < done < total
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    from attn_core import load_model

    m = load_model(str(en_bert_dir))
    doc = document_from_text(text, "doc.txt")
    resumed = analyze(doc, m, store=ResultStore(store_path))
    assert resumed.cached_chunks == done  # finished chunks survived the kill
    fresh = analyze(doc, m, use_store=False)
    np.testing.assert_allclose([t.score for t in resumed.tokens], [t.score for t in fresh.tokens], rtol=1e-4)
