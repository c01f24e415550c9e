"""Real-browser end to end: Debian Chromium driven by Playwright against `streamlit run dashboard.py`.

Skipped (with the reason) when Chromium or Playwright is missing, unless CHUMOKU_REQUIRE_BROWSER=1 (CI sets it):
then a missing browser is a failure. Screenshots go to artifacts/screenshots/ (gitignored); a screenshot of the
Screen page on the bundled US 8,930,553 sample is refreshed in docs/screen.png for the README.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "attn_core" / "sample_data"
SHOTS = REPO / "artifacts" / "screenshots"
DOCS_SHOT = REPO / "docs" / "screen.png"
CHROMIUM = os.environ.get("CHROMIUM") or next(
    (p for p in ("/usr/lib/chromium/chromium", "/usr/bin/chromium") if Path(p).exists()), None)
CHROME_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"]
XSS_TEXT = "The server sends packets. <script>alert(1)</script><img src=x onerror=alert(2)> The proxy reads headers.\n"
TIMEOUT_MS = 120_000  # a cold model load and analysis on 2 shared cores


def _missing(reason: str):
    if os.environ.get("CHUMOKU_REQUIRE_BROWSER") == "1":
        pytest.fail(f"CHUMOKU_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(data_dir: Path, log_path: Path, timeout: float = 90.0) -> tuple[subprocess.Popen, str]:
    """`streamlit run dashboard.py` on a free port, in its own process group (stop it with stop_server)."""
    port = _free_port()
    env = dict(os.environ, CHUMOKU_DATA_DIR=str(data_dir), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    cmd = [sys.executable, "-m", "streamlit", "run", str(REPO / "dashboard.py"), "--server.address", "127.0.0.1",
           "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none"]
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    t0 = time.monotonic()
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}; see {log_path}")
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=1) as r:
                if r.read() == b"ok":
                    return proc, url
        except OSError:
            pass
        if time.monotonic() - t0 > timeout:
            stop_server(proc)
            raise TimeoutError("streamlit did not become healthy")
        time.sleep(0.2)


def stop_server(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)  # only the group this test started
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


@pytest.fixture(scope="module")
def browser_env(tmp_path_factory):
    if not CHROMIUM:
        _missing("Chromium is not installed (apt-get install chromium fonts-noto-cjk)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright (python) is not installed")
    SHOTS.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path_factory.mktemp("browser")
    proc, url = start_server(tmp / "data", SHOTS / "streamlit.log")
    try:
        with sync_playwright() as pw:
            ctx = pw.chromium.launch_persistent_context(
                str(tmp / "profile"), executable_path=CHROMIUM, headless=True, args=CHROME_FLAGS,
                viewport={"width": 1400, "height": 900}, locale="ja-JP")
            try:
                yield ctx, url, tmp
            finally:
                ctx.close()
    finally:
        stop_server(proc)


def doc_box_scroll(page) -> float:
    return page.evaluate("document.querySelector('.st-key-screen-doc').scrollTop")


def passage_in_view(page, target: str) -> bool:
    return page.evaluate("""(id) => { const r = document.getElementById(id).getBoundingClientRect();
        const box = document.querySelector('.st-key-screen-doc').getBoundingClientRect();
        return r.top >= Math.max(0, box.top) - 2 && r.top < Math.min(window.innerHeight, box.bottom); }""", target)


def wait_idle(page) -> None:
    """Until the script run (and the background analysis of the other documents) has finished."""
    from playwright.sync_api import expect

    expect(page.get_by_role("button", name="Stop")).to_have_count(0)


def test_screen_in_a_real_browser(browser_env):
    from playwright.sync_api import expect

    ctx, url, tmp = browser_env
    page = ctx.pages[0] if ctx.pages else ctx.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    # An offline machine reaches nothing: the page must not depend on any other host (the favicon once did).
    outside: list[str] = []
    page.on("request", lambda r: outside.append(r.url)
            if r.url.split(":", 1)[0] in ("http", "https", "ws", "wss") and not r.url.startswith(url) else None)

    # A share-style deep link is the fresh server's very first request: the app must still come up whole.
    page.goto(url + "/screen")
    expect(page.get_by_role("heading", name="Screen")).to_be_visible()
    expect(page.locator('[data-testid="stSidebarNav"] a', has_text="Explorer")).to_be_visible()

    ja, en = SAMPLES / "ja_patent_excerpt_JP2020151139A_llmjp.txt", SAMPLES / "US08930553B2.txt"
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files([str(ja), str(en)])
    expect(page.locator("div.chumoku-doc span.attn-hl").first).to_be_visible()
    expect(page.get_by_role("heading", name=ja.name)).to_be_visible()

    # Japanese: the CJK font is there and the glyphs have real width (not zero-width or missing boxes).
    assert page.evaluate("document.fonts.check('16px \"Noto Sans CJK JP\"')")
    widths = page.evaluate("""() => { const d = document.querySelector('div.chumoku-doc'); const s = document.createElement('span');
        s.textContent = '特許請求の範囲'; d.appendChild(s); const w = s.getBoundingClientRect().width;
        s.textContent = '\\u25A1\\u25A1\\u25A1\\u25A1\\u25A1\\u25A1\\u25A1'; const box = s.getBoundingClientRect().width; s.remove();
        return [w, box, getComputedStyle(d).fontFamily]; }""")
    assert widths[0] > 50 and "Noto Sans CJK JP" in widths[2], widths
    page.screenshot(path=str(SHOTS / "screen_ja.png"))
    assert not page.locator('[data-testid="stException"]').count()
    assert not page.get_by_text("could not be", exact=False).count()  # both offline models loaded, no fallback

    # The English patent: pick it, then click a read-first passage and see the document scroll to it.
    page.get_by_role("combobox", name="Document").click()
    page.get_by_role("option", name="US08930553B2.txt", exact=False).click()
    expect(page.get_by_role("heading", name=en.name)).to_be_visible()
    expect(page.locator("div.chumoku-doc span.attn-hl").first).to_be_visible()
    assert page.locator("ol.chumoku-readfirst li").count() >= 5
    wait_idle(page)
    page.mouse.move(0, 0)
    DOCS_SHOT.parent.mkdir(exist_ok=True)
    page.set_viewport_size({"width": 1400, "height": 1350})
    page.locator("div.chumoku-doc").first.scroll_into_view_if_needed()
    page.screenshot(path=str(DOCS_SHOT))  # for the README: the Screen page on a real patent
    page.set_viewport_size({"width": 1400, "height": 900})
    assert DOCS_SHOT.stat().st_size < 400_000
    links = page.locator("ol.chumoku-readfirst a")
    # the read-first passage deepest in the document: surely out of view before the click
    tops = [page.evaluate("(id) => document.getElementById(id).offsetTop", links.nth(i).get_attribute("href")[1:])
            for i in range(links.count())]
    link = links.nth(tops.index(max(tops)))
    target = link.get_attribute("href")[1:]
    assert not passage_in_view(page, target)
    before = doc_box_scroll(page)
    link.click()
    page.wait_for_function("(id) => location.hash === '#' + id", arg=target)
    page.wait_for_timeout(300)
    assert doc_box_scroll(page) != before
    assert passage_in_view(page, target), target
    page.screenshot(path=str(SHOTS / "screen_en_read_first.png"))

    # A document full of markup renders as text and runs nothing.
    xss = tmp / "<img src=y onerror=alert(3)>xss.txt"
    xss.write_text(XSS_TEXT, encoding="utf-8")
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(xss))
    doc = page.locator("div.chumoku-doc")
    expect(doc).to_contain_text("<script>alert(1)</script><img src=x onerror=alert(2)>")
    expect(page.get_by_role("heading", name=xss.name)).to_be_visible()
    assert page.locator("div.chumoku-doc img, div.chumoku-doc script, div.chumoku-doc b").count() == 0
    assert page.locator("img[src='x'], img[src='y']").count() == 0
    page.wait_for_timeout(500)
    assert dialogs == []
    page.screenshot(path=str(SHOTS / "screen_xss.png"))

    # The sidebar navigation keeps the session (Explorer opens in the same session).
    page.locator('[data-testid="stSidebarNav"] a', has_text="Explorer").click()
    page.wait_for_url("**/explorer**")
    expect(page.locator('[data-testid="stMain"] h1').first).to_be_visible()
    page.screenshot(path=str(SHOTS / "explorer.png"))
    assert not page.locator('[data-testid="stException"]').count()
    assert dialogs == []

    # One claim: back on Screen, read the English patent for a query; it is shaded for it, with the badge.
    page.locator('[data-testid="stSidebarNav"] a', has_text="Screen").click()
    page.wait_for_url("**/screen**")
    page.get_by_role("combobox", name="Document").click()
    page.get_by_role("option", name="US08930553B2.txt", exact=False).click()
    expect(page.get_by_role("heading", name=en.name)).to_be_visible()
    page.get_by_text("Read for a claim or query").click()
    box = page.get_by_label("Claim or query")
    box.fill("a SIP container configured to provide the mid-dialog SIP message to the application")
    box.press("Control+Enter")
    expect(page.get_by_text("Passages are ranked", exact=False)).to_be_visible()
    expect(page.locator("div.chumoku-doc span.attn-hl").first).to_be_visible()
    expect(page.get_by_text("× random", exact=False).first).to_be_visible()
    wait_idle(page)
    page.screenshot(path=str(SHOTS / "screen_query.png"))
    assert not page.locator('[data-testid="stException"]').count()
    assert dialogs == []

    # The claim chart: rank the session's documents against the open patent's claim 1, click a cell of the
    # chart and land on that passage in Screen.
    page.locator('[data-testid="stSidebarNav"] a', has_text="Batch").click()
    page.wait_for_url("**/batch**")
    page.get_by_text("Rank against a claim or query").click()
    page.get_by_text("A claim of a document").click()
    expect(page.get_by_text("Claim chart", exact=False).first).to_be_visible()
    wait_idle(page)
    chart = page.locator(".st-key-batch-claimchart")
    expect(chart).to_be_visible()
    chart.scroll_into_view_if_needed()
    box = chart.bounding_box()
    page.screenshot(path=str(SHOTS / "batch_claim_chart.png"))
    page.mouse.click(box["x"] + min(box["width"] - 20, 360), box["y"] + 35 + 17)  # row 1, first document
    page.wait_for_url("**/screen**")
    expect(page.get_by_text("Opened from the claim chart", exact=False)).to_be_visible()
    page.wait_for_function("""() => [...document.querySelectorAll('div.chumoku-doc .passage')]
        .some(el => el.style.outline.includes('solid'))""")
    target = page.evaluate("""() => [...document.querySelectorAll('div.chumoku-doc .passage')]
        .find(el => el.style.outline.includes('solid')).id""")
    page.wait_for_timeout(300)
    assert passage_in_view(page, target), target
    page.screenshot(path=str(SHOTS / "screen_from_claim_chart.png"))
    assert not page.locator('[data-testid="stException"]').count()
    assert dialogs == []
    assert outside == []
