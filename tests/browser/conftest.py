"""Browser tests: the console served over HTTP on a free port, driven by Selenium in headless Chromium.

Each test gets the service on its own key prefix with the demo catalogue
published, served by a werkzeug server thread. Chromium is Debian's
(``/usr/bin/chromium`` with ``/usr/bin/chromedriver``); without them the tests
are skipped, except under CI (``CI=true``), where they must run. Chromium is
kept off the network: every host name but the loopback fails to resolve and
anything not local goes to a closed proxy port, so a page that needed the
internet would show it. Each flow saves a screenshot under ``artifacts/``.
"""
from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from tests.finance_ledger import publish_demo

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser")
DRIVER_CANDIDATES = ("/usr/bin/chromedriver", "chromedriver")
WAIT_SECONDS = 10
WINDOW = (1366, 900)  # a laptop screen


def _find(candidates) -> str | None:
    for name in candidates:
        found = name if os.path.isabs(name) and os.access(name, os.X_OK) else shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the session (each test starts from a clean cookie jar)."""
    chromium, driver_path = _find(CHROMIUM_CANDIDATES), _find(DRIVER_CANDIDATES)
    if not chromium or not driver_path:
        message = ("browser tests need Debian's Chromium and ChromeDriver "
                   "(apt-get install -y chromium chromium-driver); not found")
        if os.environ.get("CI") == "true":
            pytest.fail(message + " — under CI they must run")
        pytest.skip(message)
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={WINDOW[0]},{WINDOW[1]}",
        "--lang=zh-CN,en", "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-default-apps", "--disable-extensions",
        "--disable-domain-reliability", "--disable-client-side-phishing-detection", "--no-pings",
        "--metrics-recording-only", "--disable-features=OptimizationHints,Translate,MediaRouter,AutofillServerCommunication",
        # Nothing leaves the machine: names other than the loopback do not resolve; non-local requests hit a closed port.
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1",
        "--proxy-server=http://127.0.0.1:9",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # to read the page's console errors
    service = webdriver.ChromeService(executable_path=driver_path)
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture
def served(settings_overrides):
    """The service with the demo catalogue published, over HTTP on a free port; ``base``, ``app``, ``comps``, keys."""
    from wallet_market.app import create_app

    app = create_app(settings_overrides, start_background=True)
    comps = app.extensions["wallet_market"]
    publish_demo(comps)
    keys = {role: comps.api_keys.create(role, name=f"browser-{role}") for role in ("app", "pm", "finance")}
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="console-test-server", daemon=True)
    thread.start()
    try:
        yield {"base": f"http://127.0.0.1:{server.server_port}", "app": app, "comps": comps, "keys": keys}
    finally:
        server.shutdown()
        thread.join(timeout=10)
        comps.close()


@pytest.fixture
def page(browser, served, request):
    """The browser, cleared, with helpers; a screenshot of the last screen is kept under ``artifacts/``."""
    browser.delete_all_cookies()
    browser.get_log("browser")  # what earlier tests left in the console log
    helper = Page(browser, served)
    yield helper
    ARTIFACTS.mkdir(exist_ok=True)
    helper.screenshot(ARTIFACTS / f"{request.node.name}.png")


class Page:
    def __init__(self, driver, served):
        self.driver = driver
        self.served = served
        self.base = served["base"]

    def open(self, path: str) -> None:
        self.driver.get(self.base + path)

    def wait(self, condition, timeout: float = WAIT_SECONDS):
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(self.driver, timeout).until(condition)

    def find(self, css: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def visible(self, css: str):
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as ec

        return self.wait(ec.visibility_of_element_located((By.CSS_SELECTOR, css)))

    def text_in(self, css: str, text: str):
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as ec

        return self.wait(ec.text_to_be_present_in_element((By.CSS_SELECTOR, css), text))

    def sign_in(self, role: str) -> None:
        from selenium.webdriver.common.keys import Keys

        self.open("/console/login")
        field = self.visible("#f-api-key")
        field.send_keys(self.served["keys"][role], Keys.ENTER)
        self.visible("header nav")

    def screenshot(self, path: Path) -> None:
        """The whole page, not only the window: the window grows to the page's height for the picture."""
        width, height = WINDOW
        full = self.driver.execute_script("return Math.max(document.documentElement.scrollHeight, document.body ? document.body.scrollHeight : 0)")
        self.driver.set_window_size(width, max(height, min(int(full or height) + 200, 6000)))
        self.driver.execute_script("window.scrollTo(0, 0)")
        try:
            self.driver.save_screenshot(str(path))
        finally:
            self.driver.set_window_size(width, height)

    def console_errors(self) -> list[str]:
        """The page's console errors since the last call: scripts failing, a blocked resource, a CSP violation."""
        return [entry["message"] for entry in self.driver.get_log("browser") if entry["level"] == "SEVERE"]

    def resources(self) -> list[str]:
        """Every URL the page loaded (scripts, styles, images, fonts, requests)."""
        return self.driver.execute_script(
            "return [location.href].concat(performance.getEntriesByType('resource').map(e => e.name))"
        )
