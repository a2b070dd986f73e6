"""The web page in real headless Chromium: ask, watch the answer stream in, click a citation, see an abstention
and an error. `RAG_SCREENSHOTS=docs timeout 300 pytest tests/serve/test_page.py` refreshes the screenshots of
docs/serving.md."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.serve.fakes import EchoGenerator, answer_pipeline
from tests.serve.helpers import serving

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
DRIVER = shutil.which("chromedriver")


@pytest.fixture
def browser() -> Iterator[Any]:
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install 'rag[dev]')")
    if CHROMIUM is None or DRIVER is None:
        pytest.skip("no headless Chromium: install Debian's chromium and chromium-driver packages")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_ask_watch_the_stream_and_open_a_citation(browser: Any, echo_index: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    generator = EchoGenerator(words=12, delay=0.15, source="passage")
    with serving(echo_index, answer_pipeline(generator)) as client:
        browser.get(str(client.base_url) + "/")
        browser.find_element(By.ID, "question").send_keys("Why does bread dough rise?")
        browser.find_element(By.ID, "ask").click()
        wait = WebDriverWait(browser, 20)
        answer = browser.find_element(By.ID, "answer")
        wait.until(lambda _: len(answer.text.split()) >= 2)
        partial = answer.text
        assert "[1]" not in partial  # seen mid-stream, before the final answer arrived
        link = wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "#answer a.cite")))
        assert answer.text.startswith(partial.split()[0]) and answer.text.endswith("[1].")
        link.click()
        wait.until(ec.visibility_of_element_located((By.ID, "passage")))
        assert "bread.md" in browser.find_element(By.ID, "passage-source").text
        assert "yeast ferments sugars" in browser.find_element(By.ID, "passage-text").text
        assert "bread.md" in browser.find_element(By.ID, "sources").text
        screenshot(browser, echo_index.parent, "page-answer.png")

        ask(browser, "zzzq qqxz")  # no passage matches: the page says the documents do not answer it
        status = browser.find_element(By.ID, "status")
        wait.until(lambda _: "do not answer" in status.text)
        assert "error" not in (status.get_attribute("class") or "")
        assert browser.find_element(By.ID, "sources").text == ""
        screenshot(browser, echo_index.parent, "page-abstention.png")

        ask(browser, "why " * 1500)  # over the server's 4,000 characters: its error, shown as one
        wait.until(lambda _: "error" in (status.get_attribute("class") or ""))
        assert "4000" in status.text or "4,000" in status.text or "at most" in status.text
        screenshot(browser, echo_index.parent, "page-error.png")


def ask(browser: Any, question: str) -> None:
    from selenium.webdriver.common.by import By

    field = browser.find_element(By.ID, "question")
    field.clear()
    field.send_keys(question)
    browser.find_element(By.ID, "ask").click()


def screenshot(browser: Any, folder: Path, name: str) -> None:
    """Into `folder`, or into $RAG_SCREENSHOTS (docs/ when refreshing the screenshots of docs/serving.md)."""
    browser.save_screenshot(str(Path(os.environ.get("RAG_SCREENSHOTS") or folder) / name))


def test_a_server_with_collections_lets_the_page_choose_one(browser: Any, echo_index: Path, tmp_path: Path) -> None:
    import httpx
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.ui import WebDriverWait

    from rag.serve.app import create_app
    from rag.serve.settings import CollectionSettings, ServerSettings
    from tests.serve.helpers import build_index, running

    moons = build_index(tmp_path, answer_pipeline(), {"moons.md": "# Moons\n\nEuropa hides an ocean under its ice."})
    generator = EchoGenerator(words=8, source="passage")
    settings = ServerSettings(
        collections=(
            CollectionSettings("docs", echo_index, (answer_pipeline(generator),)),
            CollectionSettings("moons", moons, (answer_pipeline(generator),)),
        )
    )
    with running(create_app(settings)) as url:
        assert httpx.get(url + "/readyz").status_code == 200
        browser.get(url + "/")
        wait = WebDriverWait(browser, 20)
        chooser = browser.find_element(By.ID, "collection")
        wait.until(lambda _: chooser.is_displayed())
        assert [o.text for o in Select(chooser).options] == ["docs", "moons"]
        Select(chooser).select_by_visible_text("moons")
        ask(browser, "What hides an ocean?")
        wait.until(lambda _: "moons.md" in browser.find_element(By.ID, "sources").text)
