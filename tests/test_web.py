"""The web page end to end in real headless Chromium: upload a photo, see its tags, accept one, and
find the feedback in the database."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("AUTOTAG_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def live_server(tmp_path):
    """uvicorn serving the real app on a free loopback port, in a thread of this process."""
    import uvicorn

    from autotag.api.app import create_app
    from autotag.config import load_settings

    db = str(tmp_path / "lib" / "library.db")
    app = create_app(load_settings(data_dir=tmp_path / "data", api_keys=""), db=db, preload=True)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the API server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", db
    server.should_exit = True
    thread.join(timeout=15)


@pytest.fixture
def browser():
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.skip(f"chromium not found at {CHROMIUM}: apt-get install chromium")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright missing: pip install playwright")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium"), args=CHROMIUM_ARGS
        )
        yield b
        b.close()


def test_upload_see_tags_accept_one_and_find_it_stored(live_server, browser, photos, tmp_path):
    from autotag.store import open_store

    base, db = live_server
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(base + "/")
    assert page.title() == "autotag"

    page.set_input_files("#file-input", str(photos["chelsea"]))
    page.wait_for_selector("#tags li.chip", timeout=60_000)
    chips = page.locator("#tags li.chip")
    kinds = set(chips.evaluate_all("els => els.map(e => e.dataset.kind)"))
    assert kinds == {"leaf", "ancestor"}  # leaf and ancestor tags are both shown, told apart
    assert page.locator('#tags li.chip[data-tag="cat"][data-kind="ancestor"]').count() == 1
    bar = page.locator("#tags li.chip .bar span").first.get_attribute("style")
    assert bar and "width:" in bar and "%" in bar  # a confidence bar per chip
    assert "Stored as image" in page.inner_text("#status")

    leaf = page.locator('#tags li.chip[data-kind="leaf"]').first
    leaf_name = leaf.get_attribute("data-tag")
    leaf.locator("button.vote.accept").click()
    page.wait_for_selector(f'#tags li.chip.accepted[data-tag="{leaf_name}"]', timeout=15_000)
    assert "Saved" in page.inner_text("#status")
    page.screenshot(path=str(tmp_path / "web.png"), full_page=True)

    with open_store(db, data_dir=tmp_path / "data") as lib:
        images = lib.list_images()
        assert len(images) == 1
        stored = [(f.tag, f.action) for f in lib.feedback(images[0].id)]
    assert stored == [(leaf_name, "accepted")]

    # Browse the library by tag: the photo shows up under the tag it was accepted for.
    page.click('nav a[data-view="library"]')
    page.fill("#browse-tag", leaf_name)
    page.click("#browse-form button")
    page.wait_for_selector("#library figure.thumb", timeout=15_000)
    assert page.locator("#library figure.thumb").count() == 1
    assert errors == []


def _offline(page, base: str) -> list[str]:
    """Refuse every request that leaves the server under test; returns the list of refused URLs."""
    refused: list[str] = []

    def route(r):
        if r.request.url.startswith(base):
            r.continue_()
        else:
            refused.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    return refused


def test_api_docs_render_offline(live_server, browser, tmp_path):
    base, _ = live_server
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    refused = _offline(page, base)
    page.goto(base + "/docs")
    page.wait_for_selector(".swagger-ui .opblock", timeout=30_000)  # Swagger UI drew the operations
    assert page.locator(".swagger-ui .opblock").count() >= 8
    assert "/v1/tag" in page.inner_text(".swagger-ui")
    page.screenshot(path=str(tmp_path / "docs.png"))
    page.goto(base + "/redoc")
    page.wait_for_selector("[data-section-id]", timeout=30_000)  # ReDoc drew its sections
    assert "/v1/images" in page.inner_text("body")
    page.screenshot(path=str(tmp_path / "redoc.png"))
    # nothing fetched from a CDN, but ReDoc's footer logo (it hides itself when it cannot load)
    assert [u for u in refused if u != "https://cdn.redoc.ly/redoc/logo-mini.svg"] == []
