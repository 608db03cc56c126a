"""The web page in a real browser: Debian's Chromium driven by Playwright against a real `genchain serve`.

The server runs as a subprocess on 127.0.0.1 with auth on, so the page works the way it does for a user: it gets
the session cookie with `/` and no API key. Runs: two copies of the session's tiny GPT (the arena needs two text
models) and a tiny GAN on scikit-learn's digits.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from genchain.provenance.manifest import serialize

CHROMIUM = Path("/usr/bin/chromium")
playwright_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"{CHROMIUM} is absent (Debian package chromium)"),
]
TIMEOUT_MS = 15_000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tiny_run, tmp_path_factory) -> Path:
    from genchain.data.ingest import ingest
    from genchain.data.sources import get_source
    from genchain.train.gan import train_gan

    root = tmp_path_factory.mktemp("web-runs")
    runs = root / "runs"
    for name in ("tiny-a", "tiny-b"):
        shutil.copytree(tiny_run, runs / name)
    get_source("digits", root / "raw")
    ingest([str(root / "raw")], root / "digits", kind="image", label_from="dirname")
    train_gan(root / "digits", runs / "gan", overrides=["model=gan-tiny", "image_size=16", "batch_size=8",
                                                        "max_iters=2", "eval_iters=1", "eval_interval=2",
                                                        "log_interval=1", "tensorboard=false", "grid_samples=4"])
    return runs


@pytest.fixture(scope="module")
def server(runs, tmp_path_factory):
    """`genchain serve` in a subprocess; yields (base URL, database file)."""
    root = tmp_path_factory.mktemp("web-server")
    port = _free_port()
    db = root / "genchain.db"
    env = {**os.environ, "GENCHAIN_HOME": str(root / "home")}
    log = (root / "server.log").open("wb")
    command = [sys.executable, "-m", "genchain", "serve", "--runs", str(runs), "--host", "127.0.0.1",
               "--port", str(port), "--db", f"sqlite:///{db}"]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"genchain serve exited {process.returncode}: "
                                   f"{(root / 'server.log').read_text(errors='replace')[-2000:]}")
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("genchain serve did not answer /healthz within 60 s")
            time.sleep(0.2)
        yield base, db
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM))
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, server):
    """A fresh browser context (so a fresh session cookie) per test; JavaScript errors fail the test."""
    context = browser.new_context(base_url=server[0])
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def _open(page, path: str = "/") -> None:
    page.goto(path)
    page.wait_for_selector("body[data-ready=true]")


def _watch_growth(page, selector: str) -> None:
    """Record the element's text length at every DOM change, with the time, from inside the page."""
    page.evaluate(
        """(selector) => {
            window.__growth = [];
            new MutationObserver(() => {
                const node = document.querySelector(selector);
                if (node) window.__growth.push([performance.now(), node.textContent.length]);
            }).observe(document.getElementById("text-results"), {subtree: true, childList: true, characterData: true});
        }""",
        selector,
    )


def _signed_manifest(page, artefact_id: str) -> dict:
    """The artefact's manifest once the server's background signer has written it."""
    deadline = time.monotonic() + 10
    while (manifest := page.request.get(f"/v1/artefacts/{artefact_id}").json()["manifest"]) is None:
        assert time.monotonic() < deadline, f"artefact {artefact_id} was not signed within 10 s"
        time.sleep(0.1)
    return manifest


def _feedback_rows(db: Path) -> list[dict]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute("SELECT * FROM feedback ORDER BY id")]


def test_generate_streams_then_provenance_and_rating_reach_the_store(page, server):
    base, db = server
    _open(page)
    assert page.locator("#tab-text").get_attribute("aria-selected") == "true"
    page.select_option("#text-model", "tiny-b")
    page.fill("#text-prompt", "the cat")
    page.fill("#text-max-tokens", "300")
    page.fill("#text-seed", "7")
    _watch_growth(page, "#text-results .card [data-role=completion]")
    page.click("#text-generate")
    card = page.locator("#text-results .card").first
    card.and_(page.locator("[data-state=done]")).wait_for()
    text = card.locator("[data-role=completion]").text_content()
    growth = page.evaluate("window.__growth")
    lengths = [n for _, n in growth]
    assert lengths == sorted(lengths) and lengths[-1] == len(text) > 0
    # Two partial states before the end prove the page streams; more depends on how many tokens the server
    # flushes per event, which a fast, quiet machine makes few (it saw 28, 211, then all 300 characters).
    assert len({n for n in lengths if 0 < n < len(text)}) >= 2, f"the text did not grow while streaming: {growth}"

    artefact_id = card.locator("[data-role=artefact-id]").text_content()
    _signed_manifest(page, artefact_id)
    card.locator("summary", has_text="Provenance").click()
    sha_shown = card.locator("dd[data-field=sha256]").text_content()
    content = page.request.get(f"/v1/artefacts/{artefact_id}/content")  # the page's cookie, no key
    assert content.ok and hashlib.sha256(content.body()).hexdigest() == sha_shown
    assert card.locator("dd[data-field=model]").text_content() == "tiny-b"
    assert card.locator("dd[data-field=signer]").text_content().startswith("default")

    before = len(_feedback_rows(db))
    card.get_by_role("button", name="Thumbs up").click()
    card.locator("label", has_text="4★").click()
    card.get_by_label("Comment (optional)").fill("a good line")
    card.get_by_role("button", name="Send feedback").click()
    status = card.locator(".rating .status")
    status.filter(has_text="feedback saved").wait_for()
    rows = _feedback_rows(db)
    assert len(rows) == before + 1
    row = rows[-1]
    assert (row["artefact_id"], row["thumbs"], row["rating"], row["comment"]) == (artefact_id, "up", 4, "a good line")
    assert f"#{row['id']}" in status.text_content()


def test_stop_cancels_the_stream(page):
    _open(page)
    page.fill("#text-prompt", "a dog")
    page.fill("#text-max-tokens", "1000")
    page.click("#text-generate")
    completion = page.locator("#text-results .card [data-role=completion]").first
    page.wait_for_function("() => document.querySelector('[data-role=completion]').textContent.length > 10")
    page.click("#text-stop")
    card = page.locator("#text-results .card").first
    card.and_(page.locator("[data-state=stopped]")).wait_for()
    stopped_at = len(completion.text_content())
    assert stopped_at < 1000
    page.wait_for_timeout(500)
    assert len(completion.text_content()) == stopped_at
    assert card.locator("[data-role=artefact-id]").count() == 0
    assert page.locator("#text-generate").is_enabled() and page.locator("#text-stop").is_disabled()


def test_server_errors_are_shown_to_the_user(page):
    _open(page)
    page.fill("#text-prompt", "how to build a pipe bomb")  # the safety filter refuses this prompt
    page.click("#text-generate")
    alert = page.locator("#text-results .card").first.get_by_role("alert")
    alert.wait_for()
    assert alert.text_content().startswith("Error: ") and len(alert.text_content()) > len("Error: ") + 5
    # a model that went away between loading the page and pressing Generate: the server's 404 message
    page.evaluate("document.querySelector('#text-model option').value = 'gone-model'")
    page.fill("#text-prompt", "the cat")
    page.click("#text-generate")
    alert = page.locator("#text-results .card").first.get_by_role("alert")
    alert.wait_for()
    assert "gone-model" in alert.text_content()
    assert page.locator("#text-generate").is_enabled()
    # text from a prompt (or a model) is shown as text: markup in it never becomes an element
    page.fill("#text-prompt", '<img src=x onerror="window.pwned = 1">')
    page.click("#text-generate")
    card = page.locator("#text-results .card").first
    card.and_(page.locator("[data-state=done], [data-state=error]")).wait_for()
    assert card.locator(".prompt").text_content() == '<img src=x onerror="window.pwned = 1">'
    assert page.locator("#text-results img").count() == 0 and page.evaluate("window.pwned") is None


def test_image_grid_with_provenance_and_verify(page, tmp_path):
    _open(page)
    page.get_by_role("tab", name="Images").click()
    assert page.locator("#panel-images").is_visible() and page.locator("#panel-text").is_hidden()
    page.fill("#image-n", "3")
    page.fill("#image-seed", "5")
    page.click("#image-generate")
    tiles = page.locator("#image-results .tile")
    tiles.nth(2).locator("img").wait_for()
    assert tiles.count() == 3
    assert page.evaluate("[...document.querySelectorAll('#image-results img')].every(i => i.naturalWidth > 0)")
    first = tiles.first
    artefact_id = first.locator("[data-role=artefact-id]").text_content()
    manifest = _signed_manifest(page, artefact_id)
    content = page.request.get(f"/v1/artefacts/{artefact_id}/content").body()
    assert content[:8] == b"\x89PNG\r\n\x1a\n"
    first.locator("summary", has_text="Provenance").click()
    assert first.locator("dd[data-field=kind]").text_content() == "image"
    assert first.locator("dd[data-field=sha256]").text_content() == hashlib.sha256(content).hexdigest()

    # verify the stored file with its signed manifest, as a user who downloaded both would
    (tmp_path / "image.png").write_bytes(content)
    (tmp_path / "image.png.manifest.json").write_bytes(serialize(manifest))
    page.get_by_role("tab", name="Verify a file").click()
    page.set_input_files("#verify-file", str(tmp_path / "image.png"))
    page.set_input_files("#verify-manifest", str(tmp_path / "image.png.manifest.json"))
    page.click("#verify-submit")
    page.locator("#verify-result .verdict").wait_for()
    checks = {li.locator("strong").text_content(): li.get_attribute("data-status")
              for li in page.locator("#verify-result .checks li").all()}
    assert {name: checks[name] for name in ("manifest", "integrity", "signature", "ledger", "c2pa")} == dict.fromkeys(
        ("manifest", "integrity", "signature", "ledger", "c2pa"), "ok")
    # 16 px images are below the image watermark's minimum size: skipped, and the page says why
    assert checks["watermark"] == "skipped" and "minimum" in page.locator("#verify-result li.skip").text_content()
    assert page.locator("#verify-result .verdict").text_content() == "Verified: no check failed (1 skipped)."


def test_tabs_are_keyboard_operable_and_follow_the_models(page):
    _open(page)
    visible = [t.text_content() for t in page.get_by_role("tab").all() if t.is_visible()]
    assert visible == ["Text", "Images", "Verify a file"]
    page.get_by_role("tab", name="Text").focus()
    page.keyboard.press("ArrowRight")
    assert page.get_by_role("tab", name="Images").get_attribute("aria-selected") == "true"
    page.keyboard.press("End")
    assert page.evaluate("document.activeElement.id") == "tab-verify"
    assert page.locator("#panel-verify").is_visible()


def test_arena_vote_reveals_models_and_updates_the_leaderboard(page):
    _open(page, "/arena")
    board = page.locator("#board")
    before = int(board.get_attribute("data-comparisons"))
    page.fill("#pair-prompt", "the king")
    page.fill("#pair-max-tokens", "20")
    page.click("#pair-submit")
    page.locator("#duel").wait_for()
    assert page.locator("#left-text").text_content() and page.locator("#right-text").text_content()
    assert page.locator("#left-model").text_content() == ""  # names stay hidden until the vote
    page.get_by_role("button", name="A is better").click()
    page.locator("#left-model").filter(has_text="A was").wait_for()
    revealed = {page.locator(f"#{side}-model").text_content().split()[-1] for side in ("left", "right")}
    assert revealed <= {"tiny-a", "tiny-b"}
    page.wait_for_function(f"() => Number(document.getElementById('board').dataset.comparisons) === {before + 1}")
    names = board.locator("tbody th").all_text_contents()
    assert set(revealed) <= set(names)
    assert page.get_by_role("button", name="A is better").is_disabled()
