"""Browser benchmark (run by hand): how fast the Screen page answers in a real Chromium.

    python benchmarks/bench_browser.py [--ten PATH] [--hundred PATH]

1. ~10-page document (default: ../shared/corpus/en/US06859910B2.txt, 41 KB):
   cold   = fresh server + fresh CHUMOKU_DATA_DIR: upload → first shaded span visible (model load included),
            once with a fresh models folder (the ONNX export is then built in the background) and once with
            one prepared by `python -m attn_core prepare`;
   cached = a new browser session on the same server (single-user mode lists the workspace, so the document
            is already there): page open → first shaded span.
2. ~100-page document (default: ../shared/corpus/en/US08927118B2.txt, 270 KB), fresh server and data dir:
   upload → first visible progress (a progress bar or the analysis status), → first shaded span,
   then clicks on read-first links: click → target passage in view (scroll latency), and a find-box rerun.
Targets: cold ≤ 10 s, cached ≤ 1 s, progress ≤ 2 s. Prints one line per number; the load average is printed
too, since the machine's cores may be shared.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from test_browser import CHROME_FLAGS, CHROMIUM, start_server, stop_server  # noqa: E402

CORPUS = REPO.parent / "shared" / "corpus" / "en"
UPLOAD = '[data-testid="stFileUploader"] input[type="file"]'
SPAN = "div.chumoku-doc span.attn-hl"
PROGRESS = '[data-testid="stProgress"], [data-testid="stExpander"] summary'


def new_page(pw, profile: Path):
    ctx = pw.chromium.launch_persistent_context(str(profile), executable_path=CHROMIUM, headless=True,
                                               args=CHROME_FLAGS, viewport={"width": 1400, "height": 900})
    page = ctx.pages[0] if ctx.pages else ctx.new_page()
    page.set_default_timeout(600_000)
    return ctx, page


def open_screen(page, url: str) -> None:
    """The page as a reviewer sees it before dropping a file: rendered, and its first script run finished."""
    page.goto(url + "/screen")
    page.get_by_role("heading", name="Screen").wait_for()
    page.locator(UPLOAD).wait_for(state="attached")
    page.get_by_text("all-MiniLM-L6-v2 (offline) · encoder").first.wait_for()
    page.get_by_role("button", name="Stop").wait_for(state="detached")
    page.wait_for_timeout(300)


def upload_until_span(page, path: Path) -> tuple[float, float | None]:
    """Seconds from upload to the first visible progress (None if it never showed) and to the first span."""
    t0 = time.monotonic()
    page.locator(UPLOAD).set_input_files(str(path))
    progress = None
    span = page.locator(SPAN).first
    while True:
        if progress is None and page.locator('[data-testid="stProgress"]').count():
            progress = time.monotonic() - t0
        if span.count() and span.is_visible():
            return time.monotonic() - t0, progress
        page.wait_for_timeout(25)


def prepare_models(folder: Path) -> float:
    """`python -m attn_core prepare` into `folder` (what a first session or an install leaves); its seconds."""
    import subprocess

    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "attn_core", "prepare"], cwd=REPO, check=True, capture_output=True,
                   env=dict(os.environ, CHUMOKU_MODELS_DIR=str(folder), CHUMOKU_DATA_DIR=str(folder / "data"),
                            HF_HUB_OFFLINE="1"))
    return time.monotonic() - t0


def bench_ten(pw, path: Path, prepared: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        models = Path(tmp) / "models"
        os.environ["CHUMOKU_MODELS_DIR"] = str(models)  # inherited by the server
        if prepared:
            print(f"models folder prepared beforehand (python -m attn_core prepare, not timed: "
                  f"{prepare_models(models):.0f} s)")
        else:
            print("fresh models folder: the ONNX export is built in the background during the first session")
        proc, url = start_server(Path(tmp) / "data", Path(tmp) / "streamlit.log")
        try:
            ctx, page = new_page(pw, Path(tmp) / "p1")
            t0 = time.monotonic()  # cold: a fresh server's first page, the file dropped as soon as it can be
            page.goto(url + "/screen")
            page.locator(UPLOAD).wait_for(state="attached")
            opened = time.monotonic() - t0
            after_upload, progress = upload_until_span(page, path)
            ctx.close()
            print(f"10-page {path.name} ({path.stat().st_size // 1024} KB): cold, page open → first shaded span "
                  f"{opened + after_upload:.2f} s (model load and analysis included; uploader ready after "
                  f"{opened:.2f} s, first progress {progress if progress is None else round(progress, 2)} s "
                  f"after the upload)")
            for i in range(2):  # single-user mode: a new session lists the workspace, the document included
                ctx, page = new_page(pw, Path(tmp) / f"p{i + 2}")
                t0 = time.monotonic()
                page.goto(url + "/screen")
                page.locator(SPAN).first.wait_for(state="visible")
                cached = time.monotonic() - t0
                ctx.close()
                print(f"10-page cached (new browser session #{i + 1}, the document already in the workspace): "
                      f"page open → first shaded span {cached:.2f} s")
        finally:
            stop_server(proc)


def bench_hundred(pw, path: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        os.environ["CHUMOKU_MODELS_DIR"] = str(Path(tmp) / "models")  # a fresh install: export in the background
        proc, url = start_server(Path(tmp) / "data", Path(tmp) / "streamlit.log")
        try:
            ctx, page = new_page(pw, Path(tmp) / "p1")
            open_screen(page, url)
            first, progress = upload_until_span(page, path)
            n = page.locator("div.chumoku-doc div.passage").count()
            print(f"100-page {path.name} ({path.stat().st_size // 1024} KB, {n} passages): upload → first visible "
                  f"progress {progress if progress is None else round(progress, 2)} s, → first shaded span "
                  f"{first:.2f} s (analysis of every chunk included)")
            page.get_by_role("button", name="Stop").wait_for(state="detached")
            links = page.locator("ol.chumoku-readfirst a")
            times = []
            for i in range(links.count()):
                target = links.nth(i).get_attribute("href")[1:]
                t0 = time.monotonic()
                links.nth(i).click()
                page.wait_for_function("""(id) => { const r = document.getElementById(id).getBoundingClientRect();
                    return r.top >= 0 && r.top < window.innerHeight; }""", arg=target, polling="raf")
                times.append(time.monotonic() - t0)
            times.sort()
            print(f"100-page read-first click → passage in view: median {times[len(times) // 2] * 1000:.0f} ms, "
                  f"max {times[-1] * 1000:.0f} ms over {len(times)} clicks")
            page.mouse.wheel(0, 4000)
            t0 = time.monotonic()
            page.get_by_label("Find in document").fill("compound")
            page.keyboard.press("Enter")
            page.wait_for_function("() => document.querySelector('div.chumoku-doc mark') !== null", polling="raf")
            print(f"100-page find rerun (new highlight HTML for the whole document): {time.monotonic() - t0:.2f} s")
            ctx.close()
        finally:
            stop_server(proc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ten", type=Path, default=CORPUS / "US06859910B2.txt")
    ap.add_argument("--hundred", type=Path, default=CORPUS / "US08927118B2.txt")
    ap.add_argument("--only", choices=("ten", "hundred"), help="run one part")
    args = ap.parse_args()
    if not CHROMIUM:
        sys.exit("Chromium is not installed")
    from playwright.sync_api import sync_playwright

    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    with sync_playwright() as pw:
        if args.only in (None, "ten"):
            bench_ten(pw, args.ten, prepared=False)
            bench_ten(pw, args.ten, prepared=True)
        if args.only in (None, "hundred"):
            bench_hundred(pw, args.hundred)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
