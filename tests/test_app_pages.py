"""AppTest on the real dashboard.py with the real offline MiniLM: Explorer, Batch and Models pages."""
from __future__ import annotations

import csv
import io
import json

import pytest
from conftest import EN_TEXT, JA_TEXT, REPO
from streamlit.testing.v1 import AppTest

import attn_core as ac
from attn_core.library import Library, default_library

TIMEOUT = 120
DASHBOARD = str(REPO / "dashboard.py")


pytestmark = pytest.mark.usefixtures("fresh_app_caches")


def seeded_app(*docs: ac.Document) -> AppTest:
    """A new browser session that already holds `docs` (saved in the library, listed in session state)."""
    for d in docs:
        default_library().save_document(d)
    at = AppTest.from_file(DASHBOARD, default_timeout=TIMEOUT)
    if docs:
        from pages import _common as ui

        at.session_state["chumoku"] = ui.SessionState(docs=[d.sha256 for d in docs], selected=docs[0].sha256)
    at.run()
    assert not at.exception, at.exception
    return at


def charts_of(at: AppTest) -> list[dict]:
    return [json.loads(node.proto.spec) for node in at.get("vega_lite_chart")]


def test_explorer_shows_all_charts_for_a_japanese_document():
    doc = ac.document_from_text(JA_TEXT * 2, "特許 <b>.txt", "ja")
    at = seeded_app(doc)
    at.switch_page("pages/explorer.py").run()
    assert not at.exception, at.exception
    specs = charts_of(at)
    assert len(specs) == 3, [e.type for e in at.main]
    heat = next(s for s in specs if s.get("encoding", {}).get("x", {}).get("field") == "key")
    labels = heat["encoding"]["x"]["sort"]
    assert labels[0] == "0 · ‹s›" and any("本" in lab for lab in labels)  # e5 reads Japanese by default
    assert any("facet" in s for s in specs)  # the model view
    assert any(s.get("encoding", {}).get("xOffset", {}).get("field") == "measure" for s in specs)
    assert len(at.get("dataframe")) == 1  # the styled token table
    assert [b.label for b in at.get("download_button")].count("PNG") == 3
    assert at.selectbox(key="explorer.doc").value == doc.sha256
    # picking another head redraws the heatmap for it
    at.selectbox(key="explorer.head").set_value(2).run()
    assert not at.exception, at.exception
    titles = [s.get("title") for s in charts_of(at)]
    assert any(isinstance(t, str) and "head 2" in t for t in titles), titles
    # the whole chunk in the heatmap (more cells than Altair's default 5000-row limit) still renders
    slider = next(sl for sl in at.slider if sl.key and sl.key.startswith("explorer.window."))
    n = slider.max
    assert n > 75
    slider.set_value((0, n)).run()
    assert not at.exception, at.exception
    heat = next(s for s in charts_of(at) if s.get("encoding", {}).get("x", {}).get("field") == "key")
    assert len(heat["encoding"]["x"]["sort"]) == n
    # the chunk preview is escaped document text
    preview = next(m.value for m in at.markdown if "Chunk 1 of" in m.value)
    assert "本発明" in preview


def test_explorer_without_documents_points_to_screen():
    at = seeded_app()
    at.switch_page("pages/explorer.py").run()
    assert not at.exception, at.exception
    assert any("Screen" in i.value for i in at.info)
    assert not at.get("vega_lite_chart")


def _upload(at: AppTest, files):
    at.file_uploader(key="batch_uploader").set_value(files).run()
    assert not at.exception, at.exception


def test_batch_screening_marks_and_export():
    en = EN_TEXT.encode("utf-8")
    ja = (JA_TEXT * 3).encode("utf-8")
    at = seeded_app()
    at.switch_page("pages/batch.py").run()
    assert not at.exception, at.exception
    _upload(at, [("claims.txt", en, "text/plain"), ("明細書.txt", ja, "text/plain"),
                 ("broken.pdf", b"%PDF-1.7 this is not a pdf", "application/pdf"),
                 ("empty.txt", b"   \n", "text/plain")])
    errors = [e.value for e in at.error]
    assert len(errors) == 2, errors
    assert any("broken" in e for e in errors) and any("empty" in e for e in errors)
    table = at.get("dataframe")[0].value
    assert set(table["document"]) == {"claims.txt", "明細書.txt"}
    assert table["focus"].notna().all() and (table["focus"] > 0).all()
    assert list(table["focus"]) == sorted(table["focus"], reverse=True)
    assert set(table["status"]) == {"unread"}
    shas = list(table["sha256"])

    # a mark is saved with the form's Save, shown in the table, and survives a fresh session and a restart
    at.selectbox(key="batch.pick").set_value(shas[1]).run()
    at.radio(key=f"batch.status.{shas[1]}").set_value("relevant")
    at.text_area(key=f"batch.note.{shas[1]}").input("see [0002], claim 1")
    assert default_library().review(shas[1]) is None  # nothing is saved before Save
    at.button(key=f"batch.save.{shas[1]}").click().run()
    assert not at.exception, at.exception
    mark = default_library().review(shas[1])
    assert (mark.status, mark.note) == ("relevant", "see [0002], claim 1")
    table = at.get("dataframe")[0].value
    row = table[table["sha256"] == shas[1]].iloc[0]
    assert (row["status"], row["note"]) == ("relevant", "see [0002], claim 1")
    assert "relevant (" in row["verdicts"]
    assert Library(default_library().path).review(shas[1]).status == "relevant"  # a restarted server

    # export: the listed documents only (a mark on a document outside the workspace is not exported)
    other = ac.document_from_text("Someone else's document.", "other.txt", "en")
    default_library().set_review(other.sha256, other.name, "read", "not yours")
    labels = [b.label for b in at.get("download_button")]
    assert "Export marks (CSV)" in labels and "Export marks (XLSX)" in labels
    rows = list(csv.DictReader(io.StringIO(default_library().reviews_csv(shas))))
    assert [r["sha256"] for r in rows] == [shas[1]]

    # a fresh session (a reload, a new tab) lists the workspace's documents with the mark (table and form)
    doc = default_library().get_document(shas[1])
    fresh = seeded_app(doc)
    fresh.switch_page("pages/batch.py").run()
    assert not fresh.exception, fresh.exception
    t2 = fresh.get("dataframe")[0].value
    assert set(t2["sha256"]) == set(shas)  # single-user mode: one workspace
    marked = t2[t2["sha256"] == shas[1]].iloc[0]
    assert (marked["status"], marked["note"]) == ("relevant", "see [0002], claim 1")
    assert fresh.radio(key=f"batch.status.{shas[1]}").value == "relevant"
    assert not fresh.error  # another session's rejected uploads are not shown here

    # open in Screen
    at.selectbox(key="batch.pick").set_value(shas[0]).run()
    at.button(key="batch.open").click().run()
    assert not at.exception, at.exception
    assert at.session_state["chumoku"].selected == shas[0]
    assert not any("Batch screening" in t.value for t in at.title)  # we left the Batch page
    assert "batch_uploader" not in [u.key for u in at.get("file_uploader")]


def test_models_page_cache_size_and_clear():
    doc = ac.document_from_text(EN_TEXT, "a.txt", "en")
    model = ac.load_model(None)
    ac.analyze(doc, model)  # fills the result store of this test's data dir
    store = ac.default_store()
    assert store.count() > 0
    default_library().set_review(doc.sha256, doc.name, "read", "keep me")
    at = seeded_app(doc)
    at.switch_page("pages/models.py").run()
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Cached chunks"] == str(store.count())
    assert metrics["Result cache"] != "0 B"
    page_text = " ".join(m.value for m in at.markdown)
    assert str(ac.data_dir()) in page_text
    assert any("hf download tohoku-nlp/bert-base-japanese-v3" in c.value for c in at.code)
    assert not at.button(key="models.clear").disabled
    at.button(key="models.clear").click().run()
    assert any("Clear every cached chunk result" in w.value for w in at.warning)
    assert store.count() > 0  # nothing happens before the confirmation
    at.button(key="models.clear.yes").click().run()
    assert not at.exception, at.exception
    assert store.count() == 0
    assert {m.label: m.value for m in at.metric}["Cached chunks"] == "0"
    assert any("Cleared" in s.value for s in at.success)
    assert default_library().review(doc.sha256).note == "keep me"  # marks are never cleared
    assert default_library().get_document(doc.sha256) is not None


def test_models_page_runtime_choice_reaches_this_sessions_reader(monkeypatch):
    from attn_core.results import Runtime

    monkeypatch.delenv("CHUMOKU_RUNTIME", raising=False)
    at = seeded_app(ac.document_from_text(EN_TEXT, "a.txt", "en"))
    at.switch_page("pages/models.py").run()
    assert not at.exception, at.exception
    picker = at.selectbox(key="models.runtime")
    assert picker.value == Runtime.AUTO  # the server's default
    def status() -> str:  # the page's own status line of the current model
        (line,) = [m.value for m in at.markdown if "tokens per chunk" in m.value]
        return line

    assert status().endswith(("· torch", "· torch \\(ONNX export being built\\)",
                              "· ONNX Runtime \\(verified against torch\\)")), status()
    picker.select(Runtime.TORCH).run()
    assert not at.exception, at.exception
    assert at.session_state["chumoku"].runtime == "torch"
    assert status().endswith("· torch"), status()
    at.selectbox(key="models.runtime").select(Runtime.ONNX_INT8).run()
    assert status().endswith("· ONNX Runtime int8"), status()
    at.selectbox(key="models.runtime").select(Runtime.AUTO).run()
    assert at.session_state["chumoku"].runtime == ""  # back to the server's default


def test_claim_picker_defaults_to_the_open_document_and_a_query_stays_on_its_page():
    from attn_core.samples import sample_documents
    from pages import _common as ui

    docs = sample_documents()
    with_claims = [d for d in docs if ac.extract_claims(d)]
    assert len(with_claims) >= 2
    opened = with_claims[1]  # not the first: the default must follow the open document
    for d in docs:
        default_library().save_document(d)
    at = AppTest.from_file(DASHBOARD, default_timeout=TIMEOUT)
    at.session_state["chumoku"] = ui.SessionState(docs=[d.sha256 for d in docs], selected=opened.sha256)
    at.run()
    at.switch_page("pages/batch.py").run()
    assert not at.exception, at.exception
    at.radio(key="batch.qsource").set_value("A claim of a document").run()
    assert not at.exception, at.exception
    patents = at.selectbox(key="batch.qdoc")
    assert with_claims[patents.value].sha256 == opened.sha256
    assert "batch" in at.session_state["chumoku"].queries
    at.switch_page("pages/screen.py").run()
    assert not at.exception, at.exception
    assert "screen" not in at.session_state["chumoku"].queries  # never carried silently to another page
    assert not [i for i in at.info if "Passages are ranked" in i.value]


def test_a_stopped_analysis_waits_for_resume():
    from pages import _common as ui

    doc = ac.document_from_text(EN_TEXT, "stopped.txt", "en")
    default_library().save_document(doc)
    at = AppTest.from_file(DASHBOARD, default_timeout=TIMEOUT)
    at.session_state["chumoku"] = ui.SessionState(docs=[doc.sha256], selected=doc.sha256,
                                                  stopped={("screen", doc.sha256)})
    at.run()
    at.switch_page("pages/screen.py").run()
    assert not at.exception, at.exception
    assert any("You stopped the analysis" in i.value for i in at.info)
    assert not [h for h in at.html if "chumoku-doc" in h.value]  # nothing was run behind the reviewer's back
    at.button(key="screen.resume").click().run()
    assert not at.exception, at.exception
    assert [h for h in at.html if "attn-hl" in h.value]
    assert ("screen", doc.sha256) not in at.session_state["chumoku"].stopped


def test_a_long_claim_reading_waits_for_run_and_shows_its_estimate(monkeypatch):
    from attn_core.samples import sample_documents
    from pages import _common as ui

    monkeypatch.setattr(ui, "AUTO_RUN_SECONDS", 0.0)  # every fresh claim reading counts as long here
    doc = next(d for d in sample_documents() if d.language == "en")
    at = seeded_app(doc)
    at.switch_page("pages/screen.py").run()
    assert not at.exception, at.exception
    before = [h.value for h in at.html if "chumoku-readfirst" in h.value]
    at.text_area(key="screen.qtext").input("a SIP container that hands a mid-dialog message to the application").run()
    assert not at.exception, at.exception
    run = at.button(key="screen.run")
    assert run.label.startswith("Run (≈ ") and any("takes about" in i.value for i in at.info)
    assert [h.value for h in at.html if "chumoku-readfirst" in h.value] == before  # nothing ran yet
    run.click().run()
    assert not at.exception, at.exception
    assert any("Passages are ranked" in i.value for i in at.info)
    assert [h.value for h in at.html if "chumoku-readfirst" in h.value] != before
