"""The real app (dashboard.py + pages/screen.py) under Streamlit's AppTest, on the real offline MiniLM.

AppTest runs no JavaScript: what a browser does with the HTML (scrolling, fonts, dialogs) is in test_browser.py.
"""
from __future__ import annotations

import html
import os
import re
from pathlib import Path

import pytest
from conftest import EN_TEXT, JA_TEXT
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "dashboard.py")
SCREEN = "pages/screen.py"
XSS = "<script>alert(1)</script><img src=x onerror=alert(2)></span><b>bold</b>"
XSS_NAME = "<img src=x onerror=alert(3)>.txt"


pytestmark = pytest.mark.usefixtures("fresh_app_caches")


def app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at


def screen(at: AppTest) -> AppTest:
    at.switch_page(SCREEN).run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Screen"
    return at


def upload(at: AppTest, *files: tuple[str, bytes]) -> AppTest:
    at.file_uploader(key="uploader").set_value([(name, data, "application/octet-stream") for name, data in files])
    at.run()
    assert not at.exception, at.exception
    return at


def html_of(at: AppTest) -> str:
    return "\n".join(h.value for h in at.html)


def doc_html(at: AppTest) -> str:
    docs = [h.value for h in at.html if 'class="chumoku-doc"' in h.value]
    assert len(docs) == 1, "exactly one rendered document"
    return docs[0]


def visible_text(fragment: str) -> str:
    fragment = re.sub(r"<style>.*?</style>", "", fragment, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", "", fragment))


def unescape_md(s: str) -> str:
    return re.sub(r"\\(.)", r"\1", s)


def selected_name(at: AppTest) -> str:
    return unescape_md(at.subheader[0].value)


def no_raw_html_anywhere(at: AppTest) -> None:
    everything = [h.value for h in at.html] + [m.value for m in at.markdown] + [e.value for e in at.error] + \
                 [s.value for s in at.subheader] + [c.value for c in at.caption]
    for value in everything:
        # HTML blocks carry escaped text; Markdown bodies a backslash before every "<" (shown literally)
        assert not re.search(r"(?<!\\)<(script|img|b>)", value), value[:300]


# ---- home -------------------------------------------------------------------------------------------------
def test_home_shows_model_status():
    at = app()
    assert at.title[0].value.startswith("注目 Chumoku")
    assert any("all-MiniLM-L6-v2" in unescape_md(i.value) and "offline" in i.value for i in at.info)
    assert at.button(key="demo")


def test_demo_button_opens_screen_with_samples():
    at = app()
    at.button(key="demo").click().run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Screen"
    assert len(at.selectbox(key="screen.picker").options) == 3
    assert selected_name(at) == "US08930553B2.txt"
    assert "attn-hl" in doc_html(at)


# ---- screen -----------------------------------------------------------------------------------------------
def test_screen_without_documents_says_what_to_do():
    at = screen(app())
    assert any("Upload one or more documents" in i.value for i in at.info)
    assert not at.html


def test_japanese_is_read_with_the_multilingual_model_by_default():
    import attn_core as ac

    at = upload(screen(app()), ("ja.txt", JA_TEXT.encode("utf-8")))
    assert not at.exception, at.exception
    assert "multilingual" in unescape_md(at.caption[0].value)  # "Automatic" picked the Japanese-capable model
    assert not [w for w in at.warning if "unknown to" in w.value]  # it knows every token: no [UNK] warning
    out = doc_html(at)
    assert out.count('class="attn-hl"') >= 2
    assert visible_text(out).replace("\n", "").count("バルーンカテーテル") == 1
    assert ac.MULTILINGUAL_MODEL_ID in at.session_state["chumoku"].readers


def test_single_japanese_upload_shaded_escaped_with_unk_warning():
    from pages import _common as ui

    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["chumoku"] = ui.SessionState(model_id="all-MiniLM-L6-v2 (offline)")  # picked by the user
    at.run()
    at = upload(screen(at), ("ja.txt", JA_TEXT.encode("utf-8")))
    out = doc_html(at)
    assert out.count('class="attn-hl"') >= 2 and "background-color:rgba(" in out
    assert visible_text(out).replace("\n", "").count("バルーンカテーテル") == 1
    assert 'id="passage-0"' in out
    assert at.caption[0].value.startswith("ja ·")
    warnings = [w.value for w in at.warning]
    import attn_core as ac

    rec = ac.recommended_for("ja")
    assert any("unknown to" in w and "UNK" in w and rec.id in unescape_md(w) and rec.download_command in w
               for w in warnings), warnings  # the recommended Japanese model and how to get it


def test_several_files_ja_and_en_are_all_analysed():
    import attn_core as ac
    from pages import _common as ui

    at = upload(screen(app()), ("ja.txt", JA_TEXT.encode("utf-8")), ("en.md", EN_TEXT.encode("utf-8")))
    picker = at.selectbox(key="screen.picker")
    assert len(picker.options) == 2
    assert selected_name(at) == "ja.txt"  # the first new upload is opened
    assert sum(ui.get_reader(m).memo_size() for m in (ac.DEFAULT_MODEL_ID, ac.MULTILINGUAL_MODEL_ID)) == 2  # the other document was analysed in the same run, with its own progress
    picker.set_value(picker.options[1]).run()
    assert selected_name(at) == "en.md"
    assert at.caption[0].value.startswith("en ·")
    assert "attn-hl" in doc_html(at)
    assert not [w for w in at.warning if "unknown to" in w.value]  # English fits the default model


def test_read_first_is_ranked_and_links_to_passages():
    at = upload(screen(app()), ("en.txt", (EN_TEXT * 6).encode("utf-8")))
    read_first = next(h.value for h in at.html if '<ol class="chumoku-readfirst"' in h.value)
    ranks = [int(r) for r in re.findall(r'<li data-rank="(\d+)"', read_first)]
    assert ranks == sorted(ranks) and ranks[0] == 1 and len(ranks) >= 3
    targets = re.findall(r'href="#(passage-\d+)"', read_first)
    document = doc_html(at)
    for rank, target in zip(ranks, targets):  # each link reaches the passage with that rank
        assert re.search(rf'id="{target}" data-rank="{rank}"', document), (rank, target)
    minimap = next(h.value for h in at.html if '<div class="chumoku-minimap"' in h.value)
    assert set(re.findall(r'href="#(passage-\d+)"', minimap)) <= set(re.findall(r'id="(passage-\d+)"', document))


def test_find_marks_matches_and_links_to_them():
    at = upload(screen(app()), ("en.txt", EN_TEXT.encode("utf-8")))
    at.text_input(key="screen.find").input("packet").run()
    assert "<mark>packet</mark>" in doc_html(at).lower()
    assert any("**Find:** 3 matches" in m.value for m in at.markdown)
    assert any('<div class="chumoku-find"' in h.value for h in at.html)


def test_xss_in_text_and_file_name_is_rendered_as_text():
    body = f"The server sends packets. {XSS} The proxy inspects every header.\n"
    at = upload(screen(app()), (XSS_NAME, body.encode("utf-8")))
    out = doc_html(at)
    assert XSS in visible_text(out)
    assert "&lt;script&gt;" in out
    assert selected_name(at) == XSS_NAME
    no_raw_html_anywhere(at)
    names = {d.file_name for d in at.get("download_button")} if hasattr(at.get("download_button")[0], "file_name") \
        else set()
    assert all("<" not in n and "/" not in n for n in names)


def test_bad_files_get_their_own_error_and_do_not_stop_the_others():
    at = upload(screen(app()), ("first.txt", EN_TEXT.encode("utf-8")))
    assert selected_name(at) == "first.txt"
    truncated_pdf = b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 2 0 R >>\nendobj\n2 0 obj << /Type /Pa"
    bad = [("empty.txt", b""), ("noise.txt", os.urandom(4096)), ("broken.pdf", truncated_pdf),
           ("setup.exe", b"MZ\x90\x00\x03" + os.urandom(512))]
    at = upload(at, *bad, ("second.txt", JA_TEXT.encode("utf-8")))
    errors = [unescape_md(e.value) for e in at.error]
    assert len(errors) == 4, errors
    for (name, _), message in zip(bad, errors):
        assert name in message, (name, message)
    assert not any("Traceback" in e or "File \"" in e for e in errors)
    assert selected_name(at) == "second.txt" and "attn-hl" in doc_html(at)
    picker = at.selectbox(key="screen.picker")
    assert len(picker.options) == 2  # the earlier result is not lost
    picker.set_value(picker.options[0]).run()
    assert selected_name(at) == "first.txt" and "attn-hl" in doc_html(at)
    assert len(at.error) == 4  # the errors stay beside the uploader until the next upload


def test_uploading_a_listed_file_with_a_new_one_opens_the_new_one():
    """A reviewer drops a folder again with one new file in it: the new file opens, not the one they read."""
    at = upload(screen(app()), ("first.txt", EN_TEXT.encode("utf-8")))
    assert selected_name(at) == "first.txt"
    at = upload(at, ("first.txt", EN_TEXT.encode("utf-8")), ("second.txt", JA_TEXT.encode("utf-8")))
    assert selected_name(at) == "second.txt" and "attn-hl" in doc_html(at)
    assert len(at.selectbox(key="screen.picker").options) == 2


def test_language_override_changes_the_analysis():
    at = upload(screen(app()), ("ja.txt", JA_TEXT.encode("utf-8")))
    assert at.caption[0].value.startswith("ja ·")
    words_ja = doc_html(at).count('class="attn-hl"')
    sha = at.selectbox(key="screen.picker").value
    lang = at.selectbox(key=f"screen.lang.{sha}")
    assert lang.value == "auto"
    lang.set_value("en").run()
    assert not at.exception, at.exception
    assert at.caption[0].value.startswith("en ·")
    assert at.session_state["chumoku"].lang_override == {sha: "en"}
    words_en = doc_html(at).count('class="attn-hl"')
    assert words_en != words_ja  # English word segmentation of Japanese text: other words, other shading
    at.selectbox(key=f"screen.lang.{sha}").set_value("auto").run()
    assert at.caption[0].value.startswith("ja ·")


def test_share_link_opens_the_view_by_token_never_by_hash():
    import attn_core as ac
    from attn_core.library import default_library
    from attn_core.sharing import default_share_links

    doc = ac.ingest_bytes(EN_TEXT.encode("utf-8"), "shared.txt")
    default_library().save_document(doc)  # a teammate uploaded it earlier on this server
    token = default_share_links().create(doc.sha256, {"top": "35"})

    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["share"] = token
    at.query_params["model"] = "/etc"  # not a model this server offers: ignored, never loaded
    at.run()
    assert not at.exception, at.exception
    assert at.session_state["chumoku"].model_id == ac.AUTO_MODEL_ID
    at = screen(at)
    assert selected_name(at) == "shared.txt" and "attn-hl" in doc_html(at)
    assert at.slider(key="screen.top").value == 35
    link = at.get("code")[0].value if at.get("code") else ""
    assert "share=" in link and "top=35" in link and "/screen" in link and doc.sha256 not in link
    assert doc.sha256 not in str(dict(at.query_params))  # the address bar never carries the hash

    for bad in ("x" * 30, "'; drop table shares; --", "%00" * 10, "9" * 10_000):
        other = AppTest.from_file(APP, default_timeout=120)
        other.query_params["share"] = bad
        other.query_params["top"] = "inf"
        other.query_params["layer"] = "9" * 10_000
        other.run()
        assert not other.exception, other.exception
        from pages import _common as ui

        assert other.session_state["chumoku"].top_percent == ui.SessionState().top_percent
        assert other.session_state["chumoku"].selected is None  # an unknown token opens nothing, says nothing


def test_the_same_bytes_keep_each_sessions_file_name():
    first = upload(screen(app()), ("mine.txt", EN_TEXT.encode("utf-8")))
    second = upload(screen(app()), ("theirs.txt", EN_TEXT.encode("utf-8")))
    assert selected_name(second) == "theirs.txt"
    first.run()
    assert selected_name(first) == "mine.txt"  # the shared memo never renames another upload of the same bytes


def test_downloads_exist():
    at = upload(screen(app()), ("report me.txt", EN_TEXT.encode("utf-8")))
    buttons = at.get("download_button")
    assert [b.label for b in buttons] == ["HTML report", "CSV of word scores", "JSON"]


def test_classifier_label_per_document_and_chunk(classifier_dir):
    at = AppTest.from_file(APP, default_timeout=120)
    from pages import _common as ui

    at.session_state["chumoku"] = ui.SessionState(model_id=str(classifier_dir))
    at.run()
    assert not at.exception, at.exception
    at = upload(screen(at), ("en.txt", EN_TEXT.encode("utf-8")))
    metric = at.metric[0]
    assert metric.label == "Predicted label" and metric.value
    assert "probability" in metric.delta
    table = at.dataframe[0].value
    assert list(table.columns) == ["chunk", "characters", "label", "probability"] and len(table) >= 1


# ---- a claim or query (issue 6) ---------------------------------------------------------------------------
CLAIM = ("A system for processing mid-dialog SIP messages, the system comprising: an incoming message processor "
         "configured to receive a mid-dialog SIP message; and a SIP container configured to provide the message "
         "to the application in the context of the new SIP session")


def read_first_ranks(at: AppTest) -> list[str]:
    read_first = next(h.value for h in at.html if '<ol class="chumoku-readfirst"' in h.value)
    return re.findall(r'href="#(passage-\d+)"', read_first)


def test_query_mode_on_screen_shades_for_the_query_with_a_badge():
    at = app()
    at.button(key="demo").click().run()  # opens the English patent
    salient = read_first_ranks(at)
    badges = [m.value for m in at.markdown if "faithfulness" in m.value and "random" in m.value]
    assert len(badges) == 1 and re.search(r"\d\.\d× random", badges[0])  # salient highlight has its badge
    at.text_area(key="screen.qtext").input(CLAIM).run()
    assert not at.exception, at.exception
    assert any("for the whole query" in i.value for i in at.info)
    views = at.radio(key="screen.view").options
    assert len(views) == 2 + 3 and views[0].startswith("salient")  # preamble + 2 elements, each selectable
    guided = read_first_ranks(at)
    assert guided != salient  # the read-first list answers the query now
    assert "attn-hl" in doc_html(at)
    assert [m.value for m in [*at.markdown, *at.warning] if "random" in m.value]  # a badge or a plain warning
    at.radio(key="screen.view").set_value(3).run()  # element 2 only
    assert any("element 2" in i.value for i in at.info)
    at.radio(key="screen.view").set_value(0).run()  # back to the unguided view
    assert read_first_ranks(at) == salient and not [i for i in at.info if "Passages are ranked" in i.value]


def test_empty_or_unknown_query_is_a_clear_error():
    at = app()
    at.button(key="demo").click().run()
    at.text_area(key="screen.qtext").input("ⅲⅲⅲ ⅲⅲ").run()  # no token the model knows
    assert not at.exception, at.exception
    assert any("no word of the query is known" in e.value for e in at.error)
    assert "attn-hl" in doc_html(at)  # the salient view is still shown, nothing lost


def test_batch_ranks_documents_against_a_patent_claim_with_a_claim_chart():
    at = app()
    at.button(key="demo").click().run()
    at.switch_page("pages/batch.py").run()
    at.radio(key="batch.qsource").set_value("A claim of a document").run()
    assert not at.exception, at.exception
    patents = at.selectbox(key="batch.qdoc")
    assert patents.options  # the US patent (and the Japanese excerpt's 【請求項１】)
    patents.set_value(next(i for i, label in enumerate(patents.options) if "US08930553B2" in label)).run()
    assert not at.exception, at.exception
    frames = [d.value for d in at.dataframe]
    ranking = next(f for f in frames if "rank" in f.columns and "score" in f.columns)
    assert list(ranking["rank"]) == [1, 2, 3]
    assert ranking.iloc[0]["document"] == "US08930553B2.txt"  # its own claim 1 finds it first
    assert list(ranking["score"]) == sorted(ranking["score"], reverse=True)
    chart = next(f for f in frames if "element" in f.columns and f.index.name == "#")
    assert "1. US08930553B2.txt" in chart.columns and len(chart) >= 2  # one row per claim element
    assert any(b.label == "Claim chart (CSV)" for b in at.get("download_button"))


def test_a_layer_the_model_does_not_have_is_a_message_not_a_crash():
    at = app()  # the sidebar belongs to the entry script (AppTest runs a switched-to page on its own)
    at.text_input(key="sidebar.layer").input("99").run()
    assert not at.exception, at.exception
    assert any("layer '99' does not exist: this model has 6 layers" in unescape_md(e.value)
               for e in at.sidebar.error)
    assert at.session_state["chumoku"].layer == "last"
    at.text_input(key="sidebar.head").input("2").run()
    assert at.session_state["chumoku"].head == 2  # a head the model has is kept
    assert [e.value for e in at.sidebar.error if "head" in e.value or "(12 heads)" in e.value] == []


def test_a_hostile_upload_does_not_delay_another_session():
    import threading
    import time

    from test_ingest_hostile import docx_lying_about_sizes

    slow = docx_lying_about_sizes()  # seconds of decompression before it is refused: read in a worker process

    def page_time() -> float:
        t0 = time.monotonic()
        at = AppTest.from_file(APP, default_timeout=120)
        at.run()
        assert not at.exception, at.exception
        return time.monotonic() - t0

    page_time()  # imports and the model are warm from here on
    base = min(page_time() for _ in range(2))
    uploader = upload(screen(app()), ("plain.txt", EN_TEXT.encode("utf-8")))  # a reviewer with a page open
    errors: list[BaseException] = []

    def hostile() -> None:
        try:
            uploader.file_uploader(key="uploader").set_value([("liar.docx", slow, "application/octet-stream")])
            uploader.run()
            assert any("liar.docx" in unescape_md(e.value) for e in uploader.error)  # refused, with its message
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    thread = threading.Thread(target=hostile)
    thread.start()
    time.sleep(0.5)
    during = page_time()  # another reviewer opens the app meanwhile
    thread.join()
    assert not errors, errors
    assert during < base + 1.0, (during, base)
