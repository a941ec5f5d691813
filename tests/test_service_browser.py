"""The page of `audiocl serve` in a real browser: Debian's Chromium driven by Playwright (no
browser download). Uploads files, enrols, verifies, identifies, renames and deletes through the
page, and takes a screenshot (``AUDIOCL_SCREENSHOT=docs/serve_page.png`` keeps a copy: the
README's picture)."""

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
# what a closed network needs (no background requests), as root in a container (no sandbox)
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "page-token"


@pytest.fixture
def server(tmp_path, make_tiny_model):
    import uvicorn

    import audiocl
    from audiocl.app.service import create_app
    from audiocl.data.synth import synthesize_corpus
    from audiocl.modelfile import checkpoint

    path = make_tiny_model(tmp_path / "m.pt")
    cal = {"eer_threshold": 0.5, "min_dcf_0.01_threshold": 0.99, "scale": "cosine"}
    checkpoint.set_calibration(path, cal)
    model = audiocl.load_model(path)
    root = synthesize_corpus(tmp_path / "voices", speakers=2, utterances=2, duration=(1.5, 2.0))
    voices = sorted(root.rglob("*.flac"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(model, tmp_path / "s.db", token=TOKEN)
    srv = uvicorn.Server(uvicorn.Config(app, port=port, log_level="error"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/", voices, tmp_path
    srv.should_exit = True
    thread.join(timeout=30)


def test_page_enrols_verifies_identifies(server):
    url, voices, tmp_path = server
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1200, "height": 1100})
        page.goto(url)
        sync_api.expect(page.locator("#model")).to_contain_text("calibrated (threshold 0.5000)")

        # enrolling needs the token: without it the page shows the API's error
        page.set_input_files("#file-a", str(voices[0]))
        page.fill("#enroll-name", "alice")
        page.click("#enroll-form button[type=submit]")
        sync_api.expect(page.locator("#result-body")).to_contain_text("Bearer")
        page.fill("#token", TOKEN)
        page.click("#token-form button[type=submit]")
        page.click("#enroll-form button[type=submit]")
        sync_api.expect(page.locator("#result-body")).to_contain_text("Enrolled alice")
        sync_api.expect(page.locator("#speakers tbody")).to_contain_text("alice")

        # verify another recording of alice against her enrolment
        page.set_input_files("#file-a", str(voices[1]))
        page.select_option("#verify-speaker", "alice")
        page.click("#verify-form button[type=submit]")
        decision = page.locator("#result-body .decision")
        sync_api.expect(decision).to_have_text(re_decision())
        sync_api.expect(page.locator("#result-body")).to_contain_text("calibration, eer threshold")
        shot = tmp_path / "page.png"
        page.screenshot(path=str(shot), full_page=True)
        if os.environ.get("AUDIOCL_SCREENSHOT"):
            shutil.copyfile(shot, os.environ["AUDIOCL_SCREENSHOT"])

        # two recordings
        page.set_input_files("#file-b", str(voices[2]))
        page.select_option("#verify-speaker", "")
        page.select_option("#verify-point", "min_dcf_0.01")
        page.click("#verify-form button[type=submit]")
        sync_api.expect(page.locator("#result-body")).to_contain_text("recording B")
        sync_api.expect(page.locator("#result-body")).to_contain_text("min_dcf_0.01 threshold")

        page.click("#identify-form button[type=submit]")
        sync_api.expect(page.locator("#result-body table.ranking")).to_contain_text("alice")

        # rename and delete through the page's dialogs
        page.once("dialog", lambda d: d.accept("alicia"))
        page.click("#speakers tbody button.rename")
        sync_api.expect(page.locator("#speakers tbody")).to_contain_text("alicia")
        page.once("dialog", lambda d: d.accept())
        page.click("#speakers tbody button.delete")
        sync_api.expect(page.locator("#speakers tbody")).to_contain_text("nobody enrolled yet")
        browser.close()
    assert Path(shot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


def re_decision():
    import re

    return re.compile(r"^(same speaker|different speaker)$")
