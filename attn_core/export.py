"""Downloads and CLI outputs: JSON (the engine contract), CSV (one row per word), a self-contained HTML report,
the claim chart (CSV, XLSX) and reviewer marks (CSV, XLSX). No Streamlit here.

Every export carries an audit trail (`Audit`): which model (and its weights identity), which reduction
(method, layer, head), which query, how faithful the shading measured, which Chumoku version and when. A
claim chart handed to a colleague or client months later must say how it was made.

CSVs meant for people (claim chart, marks) start with a UTF-8 byte-order mark: without it Excel on
Japanese Windows reads UTF-8 as Shift_JIS and shows mojibake. Cells that a spreadsheet would run as a
formula (text from a document or a note starting with "=", "+", "-", "@") are prefixed with "'".
"""
from __future__ import annotations

import csv
import html
import io
import json
import re
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from .render import DEFAULT_TOP_PERCENT, STYLE, legend_html, minimap_html, read_first_html, render_document_html
from .results import AnalysisResult, ModelInfo, Settings

if TYPE_CHECKING:
    from .faithfulness import Faithfulness
    from .library import Mark
    from .retrieval import RankedDocument

CSV_BOM = "\ufeff"
NOT_MEASURED = "not measured"
XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_XLSX_CELL_MAX = 32_767  # Excel's limit on the characters of one cell


# ------------------------------------------------------------------------------------------------- audit
def chumoku_version() -> str:
    """The installed distribution's version; from a source checkout (not pip-installed), pyproject.toml's."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("chumoku")
    except PackageNotFoundError:
        pass
    try:
        import tomllib

        with open(Path(__file__).resolve().parents[1] / "pyproject.toml", "rb") as f:
            return str(tomllib.load(f)["project"]["version"])
    except (OSError, KeyError, ValueError):
        return "unknown"


def now_utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def cached_faithfulness(result: AnalysisResult) -> "Faithfulness | None":
    """The result's faithfulness figure if it was attached or measured before (the badge caches it); never
    computes one, so an export never waits on the deletion test."""
    if result.faithfulness is not None:
        return result.faithfulness
    try:
        from .cache import default_store
        from .faithfulness import Faithfulness, badge_key

        blob = default_store().get(badge_key(result))
        return Faithfulness.from_json(json.loads(blob.decode("utf-8")), cached=True) if blob else None
    except Exception:  # noqa: BLE001 - the figure is provenance, never a reason for an export to fail
        return None


def faithfulness_text(f: "Faithfulness | None") -> str:
    if f is None:
        return NOT_MEASURED
    if f.ratio_random is None:
        return f"not measurable ({f.windows} windows with enough words)"
    return f"{f.badge} ({f.windows} windows, {f.fraction:.0%} of words deleted)"


@dataclass(frozen=True)
class Audit:
    """How an export was made. Every field is text (empty when it does not apply, e.g. a marks export has
    no model), so it fits a CSV column, an XLSX row, a JSON object and an HTML line alike."""

    model: str = ""
    model_identity: str = ""
    method: str = ""
    layer: str = ""
    head: str = ""
    query: str = ""
    faithfulness: str = ""
    chumoku_version: str = ""
    exported_utc: str = ""
    exported_by: str = ""

    @classmethod
    def now(cls, model: ModelInfo | None = None, settings: Settings | None = None, *, query: str | None = None,
            faithfulness: str | None = None, exported_by: str = "") -> "Audit":
        return cls(model=model.id if model else "", model_identity=model.identity if model else "",
                   method=str(settings.method) if settings else "", layer=str(settings.layer) if settings else "",
                   head=str(settings.head) if settings else "", query=query or "",
                   faithfulness=faithfulness if faithfulness is not None else (NOT_MEASURED if model else ""),
                   chumoku_version=chumoku_version(), exported_utc=now_utc(), exported_by=exported_by)

    @classmethod
    def of(cls, result: AnalysisResult, exported_by: str = "") -> "Audit":
        """The audit of one reading: its model, settings, query and (cached) faithfulness."""
        return cls.now(result.model, result.settings, query=result.query.text if result.query else None,
                       faithfulness=faithfulness_text(cached_faithfulness(result)), exported_by=exported_by)

    def to_json(self) -> dict[str, str]:
        return asdict(self)

    def columns(self) -> list[str]:
        return [f"audit_{f.name}" for f in fields(self)]

    def values(self) -> list[str]:
        return [getattr(self, f.name) for f in fields(self)]

    def rows(self) -> list[tuple[str, str]]:
        """(label, value) for the audit sheet and the report."""
        labels = {"model": "Model", "model_identity": "Model identity (name + weights hash)",
                  "method": "Attention reduction", "layer": "Layer", "head": "Head", "query": "Query or claim",
                  "faithfulness": "Faithfulness", "chumoku_version": "Chumoku version",
                  "exported_utc": "Exported (UTC)", "exported_by": "Exported by"}
        return [(labels[f.name], getattr(self, f.name)) for f in fields(self)]


def safe_cell(value: Any) -> Any:
    """A spreadsheet cell that stays text: a string starting like a formula gets a leading apostrophe."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        try:
            float(value)
            return value  # "-0.5" is a number, not a formula
        except ValueError:
            return "'" + value
    return value


# ------------------------------------------------------------------------------------------ one reading
def to_json(result: AnalysisResult, audit: Audit | None = None) -> str:
    """The engine contract, plus an "audit" object (a new key: consumers of the contract ignore it)."""
    data = result.to_json()
    data["audit"] = (audit or Audit.of(result)).to_json()
    return json.dumps(data, ensure_ascii=False)


def to_csv(result: AnalysisResult, audit: Audit | None = None) -> str:
    """One row per word, with the rank of the passage it sits in. The audit columns are filled on the first
    row only: repeating a 100-character model identity on 40,000 word rows would triple the file."""
    audit = audit or Audit.of(result)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["document", "word", "start", "end", "score", "raw", "passage_rank", *audit.columns()])
    ps = result.passages
    pi = 0
    trail, blank = audit.values(), [""] * len(audit.columns())
    for word in result.words:
        while pi < len(ps) and ps[pi].end <= word.start:
            pi += 1
        rank = ps[pi].rank if pi < len(ps) and ps[pi].start <= word.start else ""
        w.writerow([result.document.name, word.text, word.start, word.end, f"{word.score:.6f}",
                    f"{word.raw:.6g}", rank, *trail])
        trail = blank
    return buf.getvalue()


def audit_html(audit: Audit) -> str:
    """The audit trail as plain block elements (the report allows no tables or scripts); every value escaped."""
    lines = "".join(f'<div><span class="k">{html.escape(label)}:</span> {html.escape(value or "—")}</div>'
                    for label, value in audit.rows())
    return f'<h2>Audit trail</h2><div class="chumoku-audit">{lines}</div>'


def report_html(result: AnalysisResult, top_percent: float = DEFAULT_TOP_PERCENT, audit: Audit | None = None) -> str:
    """One file, no external URL: opens offline and can be mailed to a colleague; ends with its audit trail."""
    d, m = result.document, result.model
    title = html.escape(d.name)
    meta = (f"{html.escape(d.language)} · {d.chars:,} characters · model {html.escape(m.id)} · "
            f"method {html.escape(result.settings.method)} · {len(result.chunks)} chunks · "
            f"[UNK] rate {result.unk_rate:.1%}")
    if result.label is not None:
        meta += f" · predicted {html.escape(result.label)} ({result.probability:.0%})"
    if m.attribution:
        meta += f"<br><small>{html.escape(m.attribution)}</small>"
    return (
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\">"
        f"<title>Chumoku · {title}</title><style>{STYLE}"
        "body{max-width:60rem;margin:2rem auto;padding:0 1rem;font-family:system-ui,sans-serif}"
        ".nav{position:sticky;top:0;background:#fff;padding:.5rem 0;z-index:1}"
        ".chumoku-audit{font-size:.85em;color:#495057}.chumoku-audit .k{font-weight:600}</style></head><body>"
        f"<h1>{title}</h1><p>{meta}</p>"
        f"<div class=\"nav\">{minimap_html(result)}{legend_html(top_percent)}</div>"
        f"<h2>Read first</h2>{read_first_html(result, 10)}<h2>Document</h2>"
        f"{render_document_html(result, top_percent=top_percent)}"
        f"{audit_html(audit or Audit.of(result))}</body></html>"
    )


def table_csv(columns: Sequence[str], rows: Iterable[Sequence[Any]], audit: Audit) -> str:
    """A table (Explorer's token table) as CSV with a BOM, formula-safe cells and the audit columns filled on
    its first row (as the word CSV does)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow([*columns, *audit.columns()])
    trail, blank = audit.values(), [""] * len(audit.columns())
    for row in rows:
        w.writerow([safe_cell(v) for v in row] + trail)
        trail = blank
    return CSV_BOM + buf.getvalue()


# ----------------------------------------------------------------------------------------- claim chart
def claim_chart_csv(ranked: Sequence["RankedDocument"], audit: Audit) -> str:
    """retrieval.claim_chart_csv (per element and document: score, paragraph, passage, span) with a BOM,
    formula-safe cells and the audit columns on every row (a chart has a handful of rows)."""
    from .retrieval import claim_chart_csv as chart

    rows = list(csv.reader(io.StringIO(chart(ranked))))
    buf = io.StringIO()
    w = csv.writer(buf)
    for i, row in enumerate(rows):
        w.writerow([safe_cell(v) for v in row] + (audit.columns() if i == 0 else audit.values()))
    return CSV_BOM + buf.getvalue()


def claim_chart_cells_long(ranked: Sequence["RankedDocument"], snippet_chars: int = 300) -> list[dict[str, Any]]:
    """One row per (element, document): the answering passage's paragraph number, span, score and snippet."""
    from .retrieval import chart_column, passage_snippet

    out: list[dict[str, Any]] = []
    if not ranked:
        return out
    for e, match in enumerate(ranked[0].elements):
        for r in ranked:
            m = r.elements[e]
            snippet = "" if m.start is None else passage_snippet(r.document.text[m.start:m.end], m.label, snippet_chars)
            out.append({"#": e + 1, "element": match.text, "rank": r.rank, "column": chart_column(r),
                        "document": r.document.name, "sha256": r.document.sha256, "document score": round(r.score, 4),
                        "score": round(m.score, 4), "paragraph": m.label or "", "start": m.start, "end": m.end,
                        "snippet": snippet})
    return out


def _workbook():
    from openpyxl import Workbook

    wb = Workbook()
    wb.remove(wb.active)
    return wb


def _put(ws, row: int, col: int, value: Any):
    """Write one cell as data, never as a formula, without characters XML cannot hold."""
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    if isinstance(value, str):
        value = ILLEGAL_CHARACTERS_RE.sub("", value)[:_XLSX_CELL_MAX]
    cell = ws.cell(row=row, column=col, value=value)
    if isinstance(value, str):
        cell.data_type = "s"  # openpyxl would store "=…" as a formula
    return cell


def _sheet(wb, title: str, header: Sequence[str], rows: Sequence[Sequence[Any]], widths: Mapping[int, int] = {}):
    from openpyxl.styles import Font

    ws = wb.create_sheet(title)
    for c, name in enumerate(header, 1):
        _put(ws, 1, c, name).font = Font(bold=True)
    for r, row in enumerate(rows, 2):
        for c, value in enumerate(row, 1):
            _put(ws, r, c, value)
    ws.freeze_panes = "A2"
    for col, width in widths.items():
        ws.column_dimensions[_letter(col)].width = width
    return ws


def _letter(col: int) -> str:
    from openpyxl.utils import get_column_letter

    return get_column_letter(col)


def _audit_sheet(wb, audit: Audit, extra: Sequence[tuple[str, str]] = ()) -> None:
    _sheet(wb, "Audit", ["field", "value"], [*audit.rows(), *extra], {1: 34, 2: 100})


def _save(wb) -> bytes:
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def claim_chart_xlsx(ranked: Sequence["RankedDocument"], audit: Audit,
                     faithfulness: Mapping[str, str] | None = None, snippet_chars: int = 300) -> bytes:
    """The claim chart as a workbook: "Claim chart" (element × document, each cell the answering paragraph's
    number and snippet, shaded by relevance, the score in a comment), "Cells" (one row per element and
    document with paragraph, span, score, snippet and the document's faithfulness) and "Audit"."""
    from openpyxl.comments import Comment
    from openpyxl.styles import Alignment, PatternFill

    faithfulness = faithfulness or {}
    wb = _workbook()
    long_rows = claim_chart_cells_long(ranked, snippet_chars)
    columns = [c for c in dict.fromkeys(r["column"] for r in long_rows)]
    elements = {r["#"]: r["element"] for r in long_rows}
    grid = {(r["#"], r["column"]): r for r in long_rows}
    ws = _sheet(wb, "Claim chart", ["#", "element", *columns], [], {1: 5, 2: 45, **{i + 3: 45 for i in range(len(columns))}})
    wrap = Alignment(wrap_text=True, vertical="top")
    for row, (n, element) in enumerate(elements.items(), 2):
        _put(ws, row, 1, n)
        _put(ws, row, 2, element).alignment = wrap
        for col, name in enumerate(columns, 3):
            cell_data = grid[(n, name)]
            text = (f"{cell_data['paragraph']} {cell_data['snippet']}".strip() if cell_data["start"] is not None
                    else "—")
            cell = _put(ws, row, col, text)
            cell.alignment = wrap
            cell.comment = Comment(f"score {cell_data['score']:.4f}", "Chumoku")
            score = max(0.0, min(1.0, float(cell_data["score"])))  # white → orange, as on the Batch page
            cell.fill = PatternFill("solid", fgColor=f"FF{255 - int(150 * score):02X}{255 - int(230 * score):02X}")
    header = ["#", "element", "rank", "document", "sha256", "document score", "score", "paragraph", "start", "end",
              "snippet", "faithfulness"]
    _sheet(wb, "Cells", header, [[r["#"], r["element"], r["rank"], r["document"], r["sha256"], r["document score"],
                                  r["score"], r["paragraph"], r["start"], r["end"], r["snippet"],
                                  faithfulness.get(r["sha256"], NOT_MEASURED)] for r in long_rows],
           {2: 40, 4: 30, 11: 80, 12: 40})
    extra = [(f"Faithfulness · {r.document.name}", faithfulness.get(r.document.sha256, NOT_MEASURED)) for r in ranked]
    _audit_sheet(wb, audit, extra)
    return _save(wb)


# ----------------------------------------------------------------------------------------------- marks
MARK_COLUMNS = ["document", "sha256", "reviewer", "status", "note", "time_utc", "version"]


def _mark_row(m: "Mark", names: Mapping[str, str]) -> list[Any]:
    from .library import format_time, reviewer_label

    return [names.get(m.sha256) or m.name, m.sha256, reviewer_label(m.reviewer), str(m.status), m.note,
            format_time(m.time), m.version]


def marks_csv(marks: Sequence["Mark"], names: Mapping[str, str] | None = None, audit: Audit | None = None) -> str:
    """Reviewer marks (one row per document and reviewer), UTF-8 with BOM, audit columns on every row."""
    audit = audit or Audit.now()
    names = names or {}
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(MARK_COLUMNS + audit.columns())
    for m in marks:
        w.writerow([safe_cell(v) for v in _mark_row(m, names)] + audit.values())
    return CSV_BOM + buf.getvalue()


def marks_xlsx(marks: Sequence["Mark"], history: Sequence["Mark"] = (), names: Mapping[str, str] | None = None,
               audit: Audit | None = None) -> bytes:
    """Reviewer marks as a workbook: "Marks" (current verdicts), "History" (every saved version) and "Audit"."""
    audit = audit or Audit.now()
    names = names or {}
    wb = _workbook()
    widths = {1: 30, 3: 28, 4: 14, 5: 60, 6: 22}
    _sheet(wb, "Marks", MARK_COLUMNS, [_mark_row(m, names) for m in marks], widths)
    _sheet(wb, "History", MARK_COLUMNS, [_mark_row(m, names) for m in history], widths)
    _audit_sheet(wb, audit)
    return _save(wb)


_FILENAME_UNSAFE = re.compile(r"[^\w.\-]+")


def file_stem(text: str, limit: int = 60) -> str:
    """A download name piece made of word characters only (a matter or document name is user text)."""
    return _FILENAME_UNSAFE.sub("-", text).strip("-")[:limit] or "chumoku"
