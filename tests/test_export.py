"""Exports carry their audit trail; the claim chart and marks open in Excel (XLSX, CSV with a BOM)."""
from __future__ import annotations

import csv
import html
import io
import json
import re
import tomllib

import pytest
from conftest import EN_TEXT, REPO

from attn_core import analyze, document_from_text, make_query
from attn_core import export as ex
from attn_core.library import Library
from attn_core.retrieval import chart_column, rank_documents

DOCS = [
    ("sip.txt", "[0001] A server receives a request from a client.\n[0002] The cluster stores the dialog state.\n"
                "[0003] The server forwards the request to a backup server.\n"),
    ("=cmd|' calc'!A1.txt", "[0001] A tunnel carries packets between two hosts.\n[0002] Each packet has a header "
                            "and a payload.\n[0003] =HYPERLINK(\"http://x\") The proxy inspects every header.\n"),
]
QUERY = "A server forwards a request to a backup server; a proxy inspects the header of a packet."


@pytest.fixture(scope="module")
def ranked(en_bert):
    docs = [document_from_text(t, n, "en") for n, t in DOCS]
    query = make_query(QUERY)
    return query, rank_documents(query, docs, en_bert)


def _pyproject_version() -> str:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]


def test_version_and_audit_of_one_reading(en_bert):
    assert ex.chumoku_version() == _pyproject_version()
    result = analyze(document_from_text(EN_TEXT, "a <b>.txt", "en"), en_bert)
    audit = ex.Audit.of(result, exported_by="alice@example.com")
    assert audit.model == result.model.id and audit.model_identity == result.model.identity
    assert (audit.method, audit.layer, audit.head) == ("received", "last", "mean")
    assert audit.faithfulness == ex.NOT_MEASURED and audit.query == ""
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", audit.exported_utc)

    # JSON: the contract's keys as they were, the audit as a new key
    data = json.loads(ex.to_json(result))
    assert data["document"] == result.to_json()["document"] and data["words"] == result.to_json()["words"]
    assert data["audit"]["model_identity"] == result.model.identity
    assert data["audit"]["chumoku_version"] == _pyproject_version()
    # CSV: the word columns as they were, the audit on the first row
    rows = list(csv.DictReader(io.StringIO(ex.to_csv(result))))
    assert rows[0]["word"] and rows[0]["audit_model"] == result.model.id and rows[0]["audit_method"] == "received"
    assert rows[1]["audit_model"] == "" and len(rows) == len(result.words)
    # HTML: an escaped audit trail at the end, still only harmless tags
    page = ex.report_html(result)
    assert "<h2>Audit trail</h2>" in page and html.escape(result.model.identity) in page
    assert "http://" not in page and "<script" not in page


def test_faithfulness_found_once_measured(en_bert):
    from attn_core.faithfulness import measure_faithfulness

    result = analyze(document_from_text(EN_TEXT * 3, "f.txt", "en"), en_bert)
    assert ex.cached_faithfulness(result) is None  # never measured by an export
    f = measure_faithfulness(result, en_bert)
    found = ex.cached_faithfulness(result)
    assert found is not None and found.badge == f.badge
    assert ex.Audit.of(result).faithfulness.startswith(f.badge)
    # a query-guided reading names its query
    from attn_core import guided_analyze

    guided = guided_analyze(result.document, en_bert, make_query("the proxy inspects the header"))
    assert ex.Audit.of(guided).query == "the proxy inspects the header"


def test_claim_chart_xlsx_has_the_cells_and_the_audit_sheet(ranked, en_bert):
    from openpyxl import load_workbook

    query, docs = ranked
    audit = ex.Audit.now(en_bert.info, None, query=query.text, faithfulness="sip.txt: 3.0× random",
                         exported_by="alice@example.com")
    faith = {docs[0].document.sha256: "3.0× random · 1.2× word-length baseline"}
    wb = load_workbook(io.BytesIO(ex.claim_chart_xlsx(docs, audit, faith)))
    assert wb.sheetnames == ["Claim chart", "Cells", "Audit"]
    chart = wb["Claim chart"]
    header = [c.value for c in chart[1]]
    assert header == ["#", "element", *[chart_column(r) for r in docs]]
    assert [chart.cell(row=i + 2, column=2).value for i in range(len(query.elements))] == list(query.elements)
    for e in range(len(query.elements)):
        for col, r in enumerate(docs, 3):
            m = r.elements[e]
            value = chart.cell(row=e + 2, column=col).value
            if m.start is None:
                assert value == "—"
                continue
            assert m.label and value.startswith(m.label + " ")  # the paragraph number, then the snippet
            snippet = value[len(m.label) + 1:].rstrip("…")
            assert snippet[:30] in " ".join(r.document.text[m.start:m.end].split())
            assert chart.cell(row=e + 2, column=col).comment.text == f"score {m.score:.4f}"
    # a document's text starting like a formula stays text (no formula cells anywhere)
    for ws in wb.worksheets:
        for row in ws.iter_rows():
            for cell in row:
                assert cell.data_type != "f", (ws.title, cell.coordinate, cell.value)
    cells = list(wb["Cells"].iter_rows(values_only=True))
    assert cells[0][:3] == ("#", "element", "rank") and len(cells) == 1 + len(query.elements) * len(docs)
    by_doc = {row[4]: row for row in cells[1:]}
    assert by_doc[docs[0].document.sha256][11] == faith[docs[0].document.sha256]
    assert any(str(row[7]).startswith("[000") for row in cells[1:])  # paragraph numbers
    audit_rows = dict(wb["Audit"].iter_rows(min_row=2, values_only=True))
    assert audit_rows["Model"] == en_bert.info.id
    assert audit_rows["Model identity (name + weights hash)"] == en_bert.info.identity
    assert audit_rows["Query or claim"] == query.text and audit_rows["Chumoku version"] == _pyproject_version()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", audit_rows["Exported (UTC)"])
    assert audit_rows["Exported by"] == "alice@example.com"
    assert audit_rows[f"Faithfulness · {docs[1].document.name}"] == ex.NOT_MEASURED


def test_claim_chart_csv_starts_with_a_bom_and_carries_the_audit(ranked, en_bert):
    query, docs = ranked
    audit = ex.Audit.now(en_bert.info, None, query=query.text)
    raw = ex.claim_chart_csv(docs, audit)
    assert raw.startswith(ex.CSV_BOM)
    encoded = raw.encode("utf-8")
    assert encoded[:3] == b"\xef\xbb\xbf"
    rows = list(csv.reader(io.StringIO(encoded.decode("utf-8-sig"))))
    header = rows[0]
    assert header[:2] == ["#", "element"] and header[-len(audit.columns()):] == audit.columns()
    for row in rows[1:]:
        assert row[header.index("audit_model_identity")] == en_bert.info.identity
        assert row[header.index("audit_query")] == query.text
        assert not any(v.startswith("=") for v in row)  # formulas are neutralised
    for r in docs:  # a file name starting like a formula is neutralised in the header too
        paragraphs = [row[header.index(ex.safe_cell(f"{r.document.name} paragraph"))] for row in rows[1:]]
        assert all(p.startswith("[000") for p in paragraphs if p) and any(paragraphs)
    assert "'=cmd|' calc'!A1.txt paragraph" in header


def test_marks_csv_and_xlsx(tmp_path):
    from openpyxl import load_workbook

    lib = Library(tmp_path / "lib.sqlite")
    d = document_from_text("The pump moves fluid.", "ポンプ.txt", "en")
    lib.save_document(d)
    lib.set_mark(d.sha256, "alice@example.com", "read", "first")
    lib.set_mark(d.sha256, "alice@example.com", "relevant", "=SUM(A1) see [0002]", expected_version=1)
    lib.set_mark(d.sha256, "bob@example.com", "not relevant", "", expected_version=0)
    audit = ex.Audit.now(exported_by="alice@example.com")
    raw = ex.marks_csv(lib.marks([d.sha256]), {d.sha256: "ポンプ.txt"}, audit).encode("utf-8")
    assert raw.startswith(b"\xef\xbb\xbf")  # Excel on Japanese Windows reads it as UTF-8
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    assert {(r["reviewer"], r["status"]) for r in rows} == {("alice@example.com", "relevant"),
                                                             ("bob@example.com", "not relevant")}
    alice = next(r for r in rows if r["reviewer"] == "alice@example.com")
    assert alice["document"] == "ポンプ.txt" and alice["note"] == "'=SUM(A1) see [0002]" and alice["version"] == "2"
    assert alice["time_utc"].endswith("Z") and alice["audit_chumoku_version"] == _pyproject_version()
    assert alice["audit_exported_by"] == "alice@example.com"

    wb = load_workbook(io.BytesIO(ex.marks_xlsx(lib.marks([d.sha256]), lib.marks([d.sha256], history=True),
                                                {d.sha256: "ポンプ.txt"}, audit)))
    assert wb.sheetnames == ["Marks", "History", "Audit"]
    marks = list(wb["Marks"].iter_rows(values_only=True))
    assert marks[0] == tuple(ex.MARK_COLUMNS) and len(marks) == 3
    history = list(wb["History"].iter_rows(values_only=True))
    assert sorted((r[2], r[6]) for r in history[1:]) == [("alice@example.com", 1), ("alice@example.com", 2),
                                                        ("bob@example.com", 1)]
    note = next(r[4] for r in marks[1:] if r[2] == "alice@example.com")
    assert note == "=SUM(A1) see [0002]"  # stored as text, not a formula
    assert all(c.data_type != "f" for row in wb["Marks"].iter_rows() for c in row)
    audit_rows = dict(wb["Audit"].iter_rows(min_row=2, values_only=True))
    assert audit_rows["Chumoku version"] == _pyproject_version() and audit_rows["Exported by"] == "alice@example.com"


def test_the_analyze_contract_still_holds(tmp_path):
    """The CLI's JSON (with the new audit key) passes ../shared/tools/check_contract.py."""
    import subprocess
    import sys

    checker = REPO.parent / "shared" / "tools" / "check_contract.py"
    if not checker.exists():
        pytest.skip("../shared/tools/check_contract.py is not beside this checkout")
    src = tmp_path / "doc.txt"
    src.write_text(EN_TEXT * 4, encoding="utf-8")
    out = tmp_path / "o"
    res = subprocess.run([sys.executable, "-m", "attn_core", "analyze", str(src), "--format", "json", "--out",
                          str(out), "--quiet"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    produced = out / "doc.txt.json"
    assert "audit" in json.loads(produced.read_text(encoding="utf-8"))
    check = subprocess.run([sys.executable, str(checker), str(produced), str(src), "--lang", "en"],
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr



def test_token_table_csv_carries_the_audit_and_keeps_formulas_text(en_bert):
    from attn_core import Settings

    audit = ex.Audit.now(en_bert.info, Settings(method="cls", layer=2, head=1), exported_by="alice@example.com")
    text = ex.table_csv(["token", "weight"], [("=HYPERLINK(1)", 0.5), ("-0.25", 0.25), ("plain", 0.25)], audit)
    assert text.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(text.removeprefix("\ufeff"))))
    assert rows[0] == ["token", "weight", *audit.columns()]
    first = dict(zip(rows[0], rows[1]))
    assert first["token"] == "'=HYPERLINK(1)" and rows[2][0] == "-0.25"  # a formula stays text, a number a number
    assert first["audit_model_identity"] == en_bert.info.identity and first["audit_method"] == "cls"
    assert first["audit_layer"] == "2" and first["audit_exported_by"] == "alice@example.com"
    assert rows[2][2:] == [""] * len(audit.columns())  # the trail once, on the first row
