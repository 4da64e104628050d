"""The web page end to end in real headless Chromium: upload a photo, see its tags, accept one, and
find the feedback in the database."""

from __future__ import annotations

import contextlib
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


@contextlib.contextmanager
def _serving(tmp_path, api_keys: str = ""):
    """uvicorn serving the real app on a free loopback port, in a thread of this process."""
    import uvicorn

    from autotag.api.app import create_app
    from autotag.config import load_settings

    db = str(tmp_path / "lib" / "library.db")
    app = create_app(load_settings(data_dir=tmp_path / "data", api_keys=api_keys), db=db, preload=True)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the API server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", db
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture
def live_server(tmp_path, monkeypatch):
    monkeypatch.delenv("AUTOTAG_API_KEYS", raising=False)
    with _serving(tmp_path) as served:
        yield served


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
    assert {"label", "category"} <= kinds  # what is in the picture and broader categories, told apart
    assert page.locator('#tags li.chip[data-tag="animal"][data-kind="category"]').count() == 1
    # the facets beside the tags: colour swatches, photo or art, object boxes over the preview
    assert page.locator("#colors li.swatch").count() >= 1
    assert page.inner_text("#picture-facts").startswith("photo")
    boxes = page.locator("#boxes g.box").count()
    assert (boxes > 0) == bool(page.inner_text("#objects-list").strip())
    bar = page.locator("#tags li.chip .bar span").first.get_attribute("style")
    assert bar and "width:" in bar and "%" in bar  # a confidence bar per chip
    assert "Stored as image" in page.inner_text("#status")

    leaf = page.locator('#tags li.chip[data-kind="label"]').first
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


def _shot(page, tmp_path, name: str) -> None:
    """A screenshot in the test's output folder, for a person to look at."""
    page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)


def _broken_images(page) -> list[str]:
    """Visible <img> elements that show nothing: no source, or a source that failed to load."""
    return page.evaluate(
        """() => [...document.images].filter(im => im.offsetParent !== null
               && (!im.getAttribute("src") || (im.complete && im.naturalWidth === 0))).map(im => im.id || im.src)"""
    )


def test_no_empty_card_before_or_after_a_failed_upload(live_server, browser, photos, tmp_path):
    base, _ = live_server
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(base + "/")
    assert not page.locator("#result").is_visible()  # nothing uploaded yet: no card
    assert _broken_images(page) == []
    _shot(page, tmp_path, "1-before-upload")

    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 this is not really a JPEG")
    page.set_input_files("#file-input", str(bad))
    page.wait_for_selector("#status.error", timeout=60_000)
    assert "Could not tag broken.jpg" in page.inner_text("#status")
    assert not page.locator("#result").is_visible() and _broken_images(page) == []
    _shot(page, tmp_path, "2-after-failed-upload")


def test_slow_upload_clears_the_previous_tags_and_similar_captions_fit(live_server, browser, photos, tmp_path):
    base, _ = live_server
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(base + "/")
    for name in ("chelsea", "coffee", "motorcycle"):  # a small library to be similar to
        page.set_input_files("#file-input", str(photos[name]))
        page.wait_for_function("document.querySelector('#status').textContent.includes('image')", timeout=60_000)
    page.wait_for_selector("#tags li.chip", timeout=60_000)
    assert page.locator("#tags li.chip").count() > 0

    held: list = []  # the next upload is held until the page has been looked at
    page.route("**/v1/images", lambda route: held.append(route))
    page.set_input_files("#file-input", str(photos["astronaut"]))
    deadline = time.monotonic() + 30
    while not held and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert held, "the upload never left the page"
    assert page.locator("#tags li.chip").count() == 0  # the motorcycle's tags are gone while the new one uploads
    assert "Tagging" in page.inner_text("#tags")
    _shot(page, tmp_path, "3-during-slow-upload")
    held[0].continue_()
    page.unroute("**/v1/images")
    page.wait_for_selector("#tags li.chip", timeout=60_000)
    page.wait_for_selector("#similar figure.thumb img", timeout=60_000)
    loaded = "[...document.querySelectorAll('#similar img')].every(im => im.naturalWidth > 0)"
    page.wait_for_function(loaded, timeout=30_000)
    _shot(page, tmp_path, "4-result-with-similar")
    captions = page.locator("#similar figure.thumb div")
    assert captions.count() >= 2
    for i in range(captions.count()):
        cut = captions.nth(i).evaluate("d => d.scrollWidth > d.clientWidth || d.scrollHeight > d.clientHeight")
        assert not cut, captions.nth(i).inner_text()
        assert "% similar" in captions.nth(i).inner_text()
    widths = page.locator("#similar figure.thumb img").evaluate_all("els => els.map(e => e.clientWidth)")
    assert min(widths) >= 200  # big enough to recognise the picture
    assert _broken_images(page) == []


def test_api_key_typed_then_file_dropped_at_once(tmp_path, browser, photos, monkeypatch):
    monkeypatch.delenv("AUTOTAG_API_KEYS", raising=False)
    with _serving(tmp_path, api_keys="s3cret") as (base, _db):
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(base + "/")
        page.click("#key-box summary")
        page.locator("#api-key").press_sequentially("s3cret")  # typed; the field keeps the focus (no change event)
        page.set_input_files("#file-input", str(photos["chelsea"]))
        page.wait_for_function("document.querySelector('#status').textContent.length > 0 "
                               "&& !document.querySelector('#status').textContent.startsWith('Tagging')",
                               timeout=60_000)  # fmt: skip
        assert "Stored as image" in page.inner_text("#status"), page.inner_text("#status")
        _shot(page, tmp_path, "5-key-typed-then-upload")


def test_teach_a_tag_from_selected_pictures_and_judge_its_suggestions(live_server, browser, photos, tmp_path):
    """Library view: select two pictures, "teach a tag", type the word; then answer the suggestions
    (each answer retrains the tag) and browse the pictures that carry it. A personal tag ("favourites"):
    whatever the owner says is right."""
    import httpx

    from autotag.store import open_store

    base, db = live_server
    ids = {}
    for name in ("astronaut", "camera", "chelsea", "coffee", "rocket", "china", "flower", "motorcycle"):
        path = photos[name]
        answer = httpx.post(base + "/v1/images", files={"file": (path.name, path.read_bytes(), "image/jpeg")},
                            timeout=120)  # fmt: skip
        ids[name] = answer.json()["id"]
    page = browser.new_page(viewport={"width": 1200, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(base + "/#library")
    page.wait_for_selector("#library figure.thumb", timeout=30_000)

    page.click("#select-mode")
    assert page.locator("#teach-button").is_disabled()  # nothing selected yet
    for name in ("astronaut", "camera"):
        page.click(f'#library figure.thumb[data-id="{ids[name]}"]')
    assert page.locator("#library figure.thumb.selected").count() == 2
    assert page.inner_text("#selected-count") == "2 pictures selected"
    page.fill("#teach-tag", "favourites")
    page.click("#teach-button")
    page.wait_for_selector("#teach-box:not([hidden]) #teach-suggestions figure.suggestion", timeout=60_000)
    assert "learned from 2 examples" in page.inner_text("#teach-summary")
    assert 'Taught “favourites”' in page.inner_text("#teach-status")
    assert page.locator("#library figure.thumb.selected").count() == 0  # selection done
    _shot(page, tmp_path, "6-taught")

    shown = page.locator("#teach-suggestions figure.suggestion").evaluate_all("els => els.map(e => +e.dataset.id)")
    assert ids["astronaut"] not in shown and ids["camera"] not in shown  # examples are not asked about
    no = ids["rocket"] if ids["rocket"] in shown else shown[0]
    page.click(f'#teach-suggestions figure.suggestion[data-id="{no}"] button.no')
    page.wait_for_function("document.querySelector('#teach-summary').textContent.includes('1 rejection')",
                           timeout=60_000)  # fmt: skip
    yes = next(i for i in page.locator("#teach-suggestions figure.suggestion").evaluate_all(
        "els => els.map(e => +e.dataset.id)") if i != no)  # fmt: skip
    page.click(f'#teach-suggestions figure.suggestion[data-id="{yes}"] button.yes')
    page.wait_for_function("document.querySelector('#teach-summary').textContent.includes('3 examples')",
                           timeout=60_000)  # fmt: skip
    assert page.locator("#learned-list a[data-tag='favourites']").count() == 1
    _shot(page, tmp_path, "7-judged")

    with open_store(db, data_dir=tmp_path / "data") as store:
        learned = store.learned_tag("favourites")
        assert learned is not None and learned.version == 3
        assert set(learned.examples) == {ids["astronaut"], ids["camera"], yes}
        assert learned.rejections == [no]

    page.click("#teach-show")  # browse the pictures that carry the tag now
    page.wait_for_function(f"document.querySelectorAll('#library figure.thumb').length >= 3 && "
                           f"!document.querySelector('#library figure.thumb[data-id=\"{no}\"]')",
                           timeout=30_000)  # fmt: skip
    found = page.locator("#library figure.thumb").evaluate_all("els => els.map(e => +e.dataset.id)")
    assert {ids["astronaut"], ids["camera"], yes} <= set(found) and no not in found
    assert errors == [] and _broken_images(page) == []
