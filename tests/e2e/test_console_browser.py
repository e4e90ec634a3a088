"""The console's main flows in headless Chromium (selenium + Debian's chromium-driver),
against the daemon's real listener (waitress) on loopback: sign in, a failed target turns
green after a replay, a lead's lineage, a viewer's replay refused, a form without the CSRF
token refused, a sign-in forged without the form's token refused. A screenshot of each page
is kept (tmp_path, and $LEADBRIDGE_ARTEFACTS)."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from leadbridge.connectors.salesforce import sandbox as sf_sandbox
from leadbridge.core.app.daemon import _console, listen
from leadbridge.core.app.http_app import App
from leadbridge.core.settings import HttpSettings
from tests.conftest import free_port, need
from tests.core.app.console.conftest import PASSWORD, World, world  # noqa: F401 (fixture)

pytestmark = pytest.mark.slow


@pytest.fixture
def base_url(world: World) -> Iterator[str]:  # noqa: F811
    console = _console(world.settings, world.store)
    settings = HttpSettings(
        host="127.0.0.1", port=free_port(), request_timeout=timedelta(seconds=10)
    )
    [listener] = listen(App(world.store, [], ["sales"], console=console), settings)
    threading.Thread(target=listener.serve, daemon=True).start()
    yield f"http://127.0.0.1:{listener.port}"
    listener.close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    driver_path = shutil.which("chromedriver")
    need(
        driver_path is not None and shutil.which("chromium") is not None,
        "headless Chromium and chromedriver (apt-get install chromium chromium-driver)",
    )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
    ):
        options.add_argument(flag)
    options.binary_location = shutil.which("chromium") or ""
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(20)
    driver.implicitly_wait(5)  # an element after a form post: wait for the next page
    try:
        yield driver
    finally:
        driver.quit()


def _shot(driver: Any, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"console-{name}.png"
    driver.save_screenshot(str(path))
    folder = os.environ.get("LEADBRIDGE_ARTEFACTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(folder) / path.name)


def _sign_in(driver: Any, base_url: str, user: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.delete_all_cookies()
    driver.get(f"{base_url}/console/")
    assert "/console/login" in driver.current_url
    driver.find_element(By.ID, "username").send_keys(user)
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.ID, "signin").click()
    WebDriverWait(driver, 10).until(lambda d: d.current_url == f"{base_url}/console/")


def _post_form(driver: Any, action: str, fields: dict[str, str]) -> None:
    """What a forged or hand-made form does: a plain POST from the page."""
    driver.execute_script(
        "const f = document.createElement('form'); f.method = 'post'; f.action = arguments[0];"
        "for (const [k, v] of Object.entries(arguments[1])) {"
        "  const i = document.createElement('input'); i.type = 'hidden'; i.name = k; i.value = v;"
        "  f.appendChild(i); }"
        "document.body.appendChild(f); f.submit();",
        action,
        fields,
    )


def test_the_console_in_a_browser(base_url: str, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    driver.get(f"{base_url}/console/leads")
    _shot(driver, tmp_path, "login")
    # a sign-in forged without the form's token (login CSRF) signs nobody in
    _post_form(driver, "/console/login", {"username": "olga", "password": PASSWORD})
    assert "CSRF" in driver.find_element(By.ID, "why").text
    _shot(driver, tmp_path, "login-forged")
    _sign_in(driver, base_url, "olga")
    row = driver.find_element(By.CSS_SELECTOR, "tr[data-target='sales']")
    assert row.get_attribute("data-state") == "red" and "dead letter" in row.text
    _shot(driver, tmp_path, "overview-red")

    # a forged form without the CSRF token changes nothing
    _post_form(driver, "/console/dead-letters/replay", {"target": "sales"})
    assert "CSRF" in driver.find_element(By.ID, "why").text

    driver.get(f"{base_url}/console/dead-letters?target=sales")
    assert "FIELD_CUSTOM_VALIDATION_EXCEPTION" in driver.page_source
    lead_link = driver.find_element(By.CSS_SELECTOR, "#dead-letters a").get_attribute("href")
    _shot(driver, tmp_path, "dead-letters")
    sf_sandbox.REJECT_MARKER, rule = "never-matches", sf_sandbox.REJECT_MARKER
    try:
        driver.find_element(By.CSS_SELECTOR, "button.replay").click()
    finally:
        sf_sandbox.REJECT_MARKER = rule
    assert "1 dead letter(s) replayed" in driver.find_element(By.ID, "notice").text
    driver.get(f"{base_url}/console/")
    row = driver.find_element(By.CSS_SELECTOR, "tr[data-target='sales']")
    assert row.get_attribute("data-state") == "green"
    _shot(driver, tmp_path, "overview-green")

    driver.get(lead_link)
    history = driver.find_element(By.ID, "history").text
    assert "dead_letter" in history and "olga" in history
    _shot(driver, tmp_path, "lineage")
    driver.get(f"{base_url}/console/audit")
    assert "replayed dead letters" in driver.find_element(By.ID, "audit").text
    _shot(driver, tmp_path, "audit")

    # a viewer sees no buttons, and a replay posted by hand with its own token is refused
    _sign_in(driver, base_url, "victor")
    driver.get(f"{base_url}/console/dead-letters")
    driver.implicitly_wait(0)
    assert not driver.find_elements(By.CSS_SELECTOR, "button.replay")
    driver.implicitly_wait(5)
    token = driver.find_element(By.NAME, "csrf").get_attribute("value")
    _post_form(driver, "/console/dead-letters/replay", {"target": "sales", "csrf": token})
    assert "victor is a viewer" in driver.find_element(By.ID, "why").text
    _shot(driver, tmp_path, "viewer-refused")
