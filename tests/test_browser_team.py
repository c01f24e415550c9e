"""Team mode in a real browser with a real OpenID Connect provider on localhost.

`oidc-provider-mock` (PyPI) runs in this process: a real authorization-code flow with signed ID tokens, whose
login form asks only for the subject (it becomes the e-mail claim). `streamlit run dashboard.py` gets an
`[auth]` section through `--secrets.files`, so `st.login` goes through Authlib exactly as with a company IdP.
Two reviewers in two browser contexts (two cookie jars): Alice's private document stays invisible to Bob, a
matter shared with Bob is visible, both verdicts on one document survive with names and times, and a save
from a stale tab shows the conflict. Skipped like tests/test_browser.py when Chromium or Playwright is missing
(failed under CHUMOKU_REQUIRE_BROWSER=1), and the same when oidc-provider-mock or Authlib is missing.
"""
from __future__ import annotations

import io
import os
import re
import secrets
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from test_browser import CHROME_FLAGS, CHROMIUM, REPO, SHOTS, _free_port, _missing, stop_server

TIMEOUT_MS = 120_000  # cold model load and analysis on 2 shared cores
ALICE, BOB = "alice@example.com", "bob@example.com"
PRIVATE = ("alice-private.txt", "Alice's own notes. The valve closes when the pressure rises above the limit.\n"
                                "The spring returns the valve to its seat.\n")
SHARED = ("acme-reference.txt", "[0001] A balloon catheter has a shaft and a balloon.\n[0002] The balloon is "
                                "inflated through a lumen in the shaft.\n[0003] A marker band shows the position.\n")


def start_team_server(data_dir: Path, secrets_file: Path, log_path: Path, port: int) -> subprocess.Popen:
    """`streamlit run dashboard.py` with the [auth] secrets, on 127.0.0.1:port (stop it with stop_server)."""
    env = dict(os.environ, CHUMOKU_DATA_DIR=str(data_dir), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    cmd = [sys.executable, "-m", "streamlit", "run", str(REPO / "dashboard.py"), "--server.address", "127.0.0.1",
           "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none", "--secrets.files", str(secrets_file)]
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    t0 = time.monotonic()
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}; see {log_path}")
        try:
            with urllib.request.urlopen(f"http://localhost:{port}/_stcore/health", timeout=1) as r:
                if r.read() == b"ok":
                    return proc
        except OSError:
            pass
        if time.monotonic() - t0 > 90:
            stop_server(proc)
            raise TimeoutError("streamlit did not become healthy")
        time.sleep(0.2)


def sign_in(page, url: str, subject: str) -> None:
    """The whole authorization-code flow: Chumoku's sign-in page → the provider's form → back, signed in."""
    from playwright.sync_api import expect

    page.goto(url)
    expect(page.get_by_role("heading", name="Chumoku — sign in")).to_be_visible()
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/oauth2/authorize**")
    page.locator('input[name="sub"]').fill(subject)
    page.get_by_role("button", name="Authorize").click()
    expect(page.get_by_text(f"Signed in as {subject}")).to_be_visible()


def nav(page, label: str, path: str) -> None:
    from playwright.sync_api import expect

    page.locator('[data-testid="stSidebarNav"] a', has_text=label).click()
    page.wait_for_url(f"**/{path}**")
    expect(page.locator('[data-testid="stMain"] h1').first).to_be_visible()


def wait_idle(page) -> None:
    from playwright.sync_api import expect

    page.wait_for_timeout(300)
    expect(page.get_by_role("button", name="Stop")).to_have_count(0)


def pick(page, label: str, option: str) -> None:
    """Choose an option of a select box (opened by its label)."""
    page.get_by_role("combobox", name=label, exact=True).click()
    page.get_by_role("option", name=option, exact=False).first.click()
    wait_idle(page)


def upload_in_library(page, paths: list[Path]) -> None:
    from playwright.sync_api import expect

    page.get_by_text("Add documents").click()
    page.locator('.st-key-library_uploader input[type="file"]').set_input_files([str(p) for p in paths])
    expect(page.get_by_text(f"{len(paths)} of {len(paths)} documents")).to_be_visible()
    wait_idle(page)


def mark_in_batch(page, sha: str, status: str, note: str) -> None:
    form = page.locator(f".st-key-batch-status-{sha}")
    form.get_by_text(status, exact=True).click()
    page.locator(f".st-key-batch-note-{sha} textarea").fill(note)
    page.locator(f".st-key-batch-save-{sha} button").click()
    wait_idle(page)


def open_batch_on(page, sha: str, name: str) -> None:
    from playwright.sync_api import expect

    nav(page, "Batch", "batch")
    wait_idle(page)
    pick(page, "Document", name)
    expect(page.locator(f".st-key-batch-status-{sha}")).to_be_visible()


def test_two_reviewers_sign_in_with_a_real_oidc_provider(tmp_path_factory):
    if not CHROMIUM:
        _missing("Chromium is not installed (apt-get install chromium fonts-noto-cjk)")
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        _missing("playwright (python) is not installed")
    try:
        import authlib  # noqa: F401 - st.login needs it in the server process
        from oidc_provider_mock import run_server_in_thread
    except ImportError:
        _missing("oidc-provider-mock or Authlib is not installed (pip install -r requirements-dev.txt)")

    from attn_core.document import sha256_hex
    from attn_core.library import Library
    from attn_core.sharing import ShareLinks

    tmp = tmp_path_factory.mktemp("team")
    SHOTS.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, text in (PRIVATE, SHARED):
        files[name] = tmp / name
        files[name].write_text(text, encoding="utf-8")
    private_sha = sha256_hex(files[PRIVATE[0]].read_bytes())
    shared_sha = sha256_hex(files[SHARED[0]].read_bytes())

    port = _free_port()
    url = f"http://localhost:{port}"
    with run_server_in_thread() as provider:
        secrets_file = tmp / "secrets.toml"
        secrets_file.write_text(
            "[auth]\n"
            f'redirect_uri = "{url}/oauth2callback"\n'
            f'cookie_secret = "{secrets.token_hex(32)}"\n'
            'client_id = "chumoku-test"\n'
            'client_secret = "not-a-secret"\n'
            f'server_metadata_url = "http://localhost:{provider.server_port}/.well-known/openid-configuration"\n',
            encoding="utf-8")
        proc = start_team_server(tmp / "data", secrets_file, SHOTS / "streamlit_team.log", port)
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROME_FLAGS)
                alice_ctx = browser.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=True)
                bob_ctx = browser.new_context(viewport={"width": 1400, "height": 900})
                expect.set_options(timeout=TIMEOUT_MS)
                a, b = alice_ctx.new_page(), bob_ctx.new_page()
                for p in (a, b):
                    p.set_default_timeout(TIMEOUT_MS)

                # Alice signs in, uploads two documents, shares one through a matter with Bob
                sign_in(a, url, ALICE)
                nav(a, "Library", "library")
                upload_in_library(a, [files[PRIVATE[0]], files[SHARED[0]]])
                a.get_by_label("New matter").fill("ACME v. Widget")
                a.get_by_role("button", name="Create matter").click()
                expect(a.get_by_text("Created the matter ACME v. Widget")).to_be_visible()
                a.get_by_label("Member's e-mail").fill(BOB)
                a.get_by_role("button", name="Add member").click()
                expect(a.get_by_text("bob@example.com is now a member")).to_be_visible()
                pick(a, "Document", SHARED[0])
                a.get_by_role("button", name="Add to matter").click()
                expect(a.get_by_text(f"Added {SHARED[0]} to ACME v. Widget")).to_be_visible()
                a.screenshot(path=str(SHOTS / "team_library_alice.png"))

                # Bob signs in: the matter's document only; Alice's private one is nowhere, not even by link
                sign_in(b, url, BOB)
                nav(b, "Library", "library")
                expect(b.get_by_text("1 of 1 documents")).to_be_visible()
                expect(b.get_by_role("combobox", name="Document", exact=True)).to_have_value(re.compile(SHARED[0]))
                b.get_by_role("combobox", name="Document", exact=True).click()
                expect(b.get_by_role("option")).to_have_count(1)
                b.keyboard.press("Escape")
                assert PRIVATE[0] not in b.content()
                token = ShareLinks(tmp / "data" / "shares.sqlite").create(private_sha, {}, ALICE)
                b.goto(f"{url}/screen?share={token}")
                expect(b.get_by_role("heading", name=SHARED[0])).to_be_visible()  # his own workspace, not hers
                wait_idle(b)
                assert PRIVATE[0] not in b.content()
                b.screenshot(path=str(SHOTS / "team_bob_share_link_refused.png"))

                # both mark the same document; both verdicts stay, each with its reviewer and time
                open_batch_on(a, shared_sha, SHARED[0])
                mark_in_batch(a, shared_sha, "relevant", "A: [0002] inflation lumen")
                expect(a.get_by_text("Saved: relevant (version 1")).to_be_visible()
                open_batch_on(b, shared_sha, SHARED[0])
                mark_in_batch(b, shared_sha, "not relevant", "B: no marker band claim")
                expect(b.get_by_text("Saved: not relevant (version 1")).to_be_visible()
                b.reload()
                wait_idle(b)
                pick(b, "Document", SHARED[0])
                others = b.locator('[data-testid="stMarkdownContainer"]', has_text="Other reviewers:")
                expect(others).to_contain_text(f"{ALICE}: relevant (")  # her verdict, with its time
                expect(others).to_contain_text("A: [0002] inflation lumen")
                b.screenshot(path=str(SHOTS / "team_batch_bob.png"))
                current = {m.reviewer: m for m in Library(tmp / "data" / "library.sqlite").marks([shared_sha])}
                assert {r: (str(m.status), m.note) for r, m in current.items()} == {
                    ALICE: ("relevant", "A: [0002] inflation lumen"), BOB: ("not relevant", "B: no marker band claim")}
                assert all(time.time() - m.time < 900 for m in current.values())

                # a stale tab: Alice's second tab saves, then her first tab (loaded at version 1) tries to
                a2 = alice_ctx.new_page()
                a2.set_default_timeout(TIMEOUT_MS)
                a2.goto(url)
                expect(a2.get_by_text(f"Signed in as {ALICE}")).to_be_visible()  # the same cookie
                open_batch_on(a2, shared_sha, SHARED[0])
                mark_in_batch(a2, shared_sha, "read", "A, second tab")
                expect(a2.get_by_text("Saved: read (version 2")).to_be_visible()
                mark_in_batch(a, shared_sha, "not relevant", "A, stale first tab")
                expect(a.get_by_text("Not saved: this mark changed while you were editing")).to_be_visible()
                a.screenshot(path=str(SHOTS / "team_conflict.png"))
                mine = Library(tmp / "data" / "library.sqlite").mark(shared_sha, ALICE)
                assert (str(mine.status), mine.note, mine.version) == ("read", "A, second tab", 2)
                # the exports are made when clicked, outside the script run: both reviewers' marks, the audit
                from openpyxl import load_workbook

                with a.expect_download() as download:
                    a.get_by_role("button", name="Export marks (XLSX)").click()
                wb = load_workbook(io.BytesIO(Path(download.value.path()).read_bytes()))  # the file has no suffix
                rows = list(wb["Marks"].iter_rows(values_only=True))
                assert {(r[2], r[3]) for r in rows[1:]} == {(ALICE, "read"), (BOB, "not relevant")}
                assert len(list(wb["History"].iter_rows())) == 1 + 3
                assert dict(wb["Audit"].iter_rows(min_row=2, values_only=True))["Exported by"] == ALICE
                with a.expect_download() as download:
                    a.get_by_role("button", name="Export marks (CSV)").click()
                assert Path(download.value.path()).read_bytes().startswith(b"\xef\xbb\xbfdocument,")
                assert not a.locator('[data-testid="stException"]').count()
                assert not b.locator('[data-testid="stException"]').count()
                browser.close()
        finally:
            stop_server(proc)
