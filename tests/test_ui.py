"""The web page of `think serve`: its routes over real HTTP, then the page itself in a real Chromium.

The browser tests drive Debian's `chromium` through `chromedriver` (Selenium), headless, against a
`think serve` on the shipped tiny reasoner; they are skipped, saying why, where either is missing.
With THINK_SCREENSHOTS=DIR they save the three pages there (the README's pictures: `make screenshots`).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import run_think
from test_server import Served, serve

QUESTION = "What is 4721 + 389?"


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ui-home")


@pytest.fixture(scope="module")
def served(home) -> Iterator[Served]:
    """A server on the tiny reasoner, over a run log that already holds a capped run and a vote."""
    env = {"THINK_HOME": str(home), "THINK_TOKEN_PROBS": "1"}
    for args in (("--tier", "light", "--max-thinking", "14", "--temperature", "0", QUESTION),
                 ("--tier", "standard", "-n", "3", "--temperature", "0.9", "What is 58 * 7?")):
        r = run_think("ask", "-m", "tiny-reasoner", *args, env=env)
        assert r.returncode == 0, r.stderr
    with serve("-m", "tiny-reasoner", env=env) as server:
        yield server


def test_the_page_and_its_assets_are_served_with_a_strict_policy(served):
    page = httpx.get(f"{served.base}/", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert '<script src="/ui/app.js"' in page.text and "<script>" not in page.text  # no inline code
    for path in ("/runs", "/runs/1"):
        assert httpx.get(f"{served.base}{path}", timeout=10).text == page.text  # the page routes itself
    assert httpx.get(f"{served.base}/ui/app.js", timeout=10).headers["content-type"].startswith("text/javascript")
    assert httpx.get(f"{served.base}/ui/nothing.js", timeout=10).status_code == 404


def test_runs_run_and_ledger_routes(served):
    runs = httpx.get(f"{served.base}/think/runs", timeout=10).json()["runs"]
    assert [r["id"] for r in runs] == [2, 1] and "thinking" not in runs[0]  # newest first, texts left out
    assert httpx.get(f"{served.base}/think/runs?tier=light", timeout=10).json()["runs"][0]["id"] == 1
    one = httpx.get(f"{served.base}/think/runs/1", timeout=10).json()
    thinking = one["pieces"]["thinking"]
    assert "".join(text for text, _, _ in thinking) == one["run"]["thinking"]
    assert [mark for _, _, mark in thinking if mark] == ["cap"] and one["labels"]["cap"]
    assert any(prob is not None for _, prob, _ in thinking)
    vote = httpx.get(f"{served.base}/think/runs/2", timeout=10).json()["run"]
    assert len(vote["sample_runs"]) == 3 and vote["vote"]["winner"]
    days = httpx.get(f"{served.base}/think/ledger", timeout=10).json()["days"]
    assert {d["tier"] for d in days} == {"light", "standard"} and all(d["fixed_budget_tokens"] > 0 for d in days)
    assert httpx.get(f"{served.base}/think/runs/99", timeout=10).status_code == 404
    bad = httpx.get(f"{served.base}/think/runs?tier=huge", timeout=10)
    assert bad.status_code == 400 and "tier" in bad.json()["error"]["message"]
    assert httpx.get(f"{served.base}/think/runs?n=0", timeout=10).status_code == 400


def test_the_run_log_is_kept_from_other_sites(served):
    rebound = httpx.get(f"{served.base}/think/runs", headers={"Host": "attacker.example"}, timeout=10)
    assert rebound.status_code == 403 and "this machine" in rebound.json()["error"]["message"]
    foreign = httpx.get(f"{served.base}/think/runs/1", headers={"Origin": "http://attacker.example"}, timeout=10)
    assert foreign.status_code == 403
    assert httpx.get(f"{served.base}/think/runs", headers={"Host": "localhost:9"}, timeout=10).status_code == 200


def test_the_key_guards_the_run_log_and_no_ui_turns_the_page_off(home):
    env = {"THINK_HOME": str(home)}
    with serve("-m", "tiny-reasoner", "--api-key", "sesame", env=env) as server:
        assert httpx.get(f"{server.base}/", timeout=10).status_code == 200  # the page holds no data
        assert httpx.get(f"{server.base}/think/info", timeout=10).json()["key_required"] is True
        assert httpx.get(f"{server.base}/think/runs", timeout=10).status_code == 401
        keyed = httpx.get(f"{server.base}/think/runs", headers={"Authorization": "Bearer sesame",
                                                                  "Host": "think.lan"}, timeout=10)
        assert keyed.status_code == 200  # with a key, any name the user serves it under
    with serve("-m", "tiny-reasoner", "--no-ui", env=env) as server:
        assert httpx.get(f"{server.base}/", timeout=10).status_code == 404
        assert httpx.get(f"{server.base}/think/runs", timeout=10).status_code == 404


def test_a_stream_says_its_plan_first_and_counts_tokens_as_it_goes(served):
    body = {"messages": [{"role": "user", "content": QUESTION}], "stream": True, "reasoning_effort": "low"}
    with httpx.stream("POST", f"{served.url}/chat/completions", json=body, timeout=60) as response:
        chunks = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")]
    assert chunks[0]["think"] == {"tier": "light", "strategy": "single",
                                  "budget": {"min_thinking": 0, "max_thinking": 512, "max_answer": 32, "samples": 1}}
    counts = [c["think_progress"]["thinking_tokens"] for c in chunks if "think_progress" in c]
    assert counts == sorted(counts) and counts[-1] > 20


# -- in a real browser ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip("no Chromium here (apt-get install chromium chromium-driver): the browser tests need it")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the test extra")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    profile = tempfile.mkdtemp(prefix="think-chromium-")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1000,860", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    chrome = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver))
    try:
        yield chrome
    finally:
        chrome.quit()
        shutil.rmtree(profile, ignore_errors=True)


def shoot(browser, name: str) -> None:
    folder = os.environ.get("THINK_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(Path(folder) / f"{name}.png"))


def console_errors(browser) -> list[str]:
    return [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]


def test_in_chromium_a_question_streams_thinking_then_an_answer(served, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    browser.get(f"{served.base}/")
    Select(browser.find_element(By.ID, "effort")).select_by_value("low")
    browser.find_element(By.ID, "prompt").send_keys(QUESTION)
    browser.find_element(By.ID, "send").click()
    status = lambda: browser.find_element(By.CSS_SELECTOR, ".turn.assistant .status").text  # noqa: E731
    WebDriverWait(browser, 60).until(lambda _: "thought" in status())
    assert "tier light" in status() and "stop" in status()
    answer = browser.find_element(By.CSS_SELECTOR, ".turn.assistant .answer").text
    assert answer == "5110"
    thinking = browser.find_element(By.CSS_SELECTOR, ".turn.assistant details.thinking")
    thinking.find_element(By.TAG_NAME, "summary").click()  # opened, as a reader would
    assert "d1 1+9+0=10" in thinking.find_element(By.CLASS_NAME, "thinking-text").text
    assert not browser.find_element(By.ID, "key-form").is_displayed()  # no key asked of a keyless server
    shoot(browser, "chat")
    assert console_errors(browser) == []


def test_in_chromium_the_runs_page_lists_the_run_and_charts_the_ledger(served, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    browser.get(f"{served.base}/runs")
    rows = lambda: browser.find_elements(By.CSS_SELECTOR, "#runs-table tbody tr")  # noqa: E731
    WebDriverWait(browser, 20).until(lambda _: rows())
    assert "serve" in rows()[0].text and QUESTION in rows()[0].text  # the chat's question, newest first
    bars = browser.find_elements(By.CSS_SELECTOR, "#ledger rect.spent")
    assert len(bars) == 2  # light and standard, today
    shoot(browser, "runs")
    Select(browser.find_element(By.CSS_SELECTOR, "#filters select[name=tier]")).select_by_visible_text("standard")
    browser.find_element(By.CSS_SELECTOR, "#filters button").click()
    WebDriverWait(browser, 20).until(lambda _: len(rows()) == 1 and "standard" in rows()[0].text)
    assert console_errors(browser) == []


def test_in_chromium_the_run_page_draws_the_trace(served, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{served.base}/runs/1")
    WebDriverWait(browser, 20).until(lambda _: browser.find_elements(By.CSS_SELECTOR, "#run .trace"))
    text = browser.find_element(By.ID, "run").text
    assert "Run #1" in text and "tier light" in text and QUESTION in text
    marker = browser.find_element(By.CSS_SELECTOR, "#run .marker")
    assert marker.text == "budget cap: thinking closed"
    assert browser.find_elements(By.CSS_SELECTOR, "#run .trace span[title^='p = ']")  # shaded by probability
    shoot(browser, "run")
    browser.get(f"{served.base}/runs/2")
    WebDriverWait(browser, 20).until(lambda _: browser.find_elements(By.CSS_SELECTOR, "#run .samples li"))
    samples = browser.find_elements(By.CSS_SELECTOR, "#run .samples li")
    assert len(samples) == 3 and sum(li.text.startswith("★") for li in samples) == 1
    assert console_errors(browser) == []


def test_in_chromium_on_a_phone_in_the_dark(served, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.set_window_size(390, 844)
    try:
        browser.get(f"{served.base}/runs/1")
        WebDriverWait(browser, 20).until(lambda _: browser.find_elements(By.CSS_SELECTOR, "#run .marker"))
        light = browser.execute_script("return getComputedStyle(document.body).backgroundColor")
        browser.find_element(By.ID, "theme").click()
        assert browser.execute_script("return document.documentElement.dataset.theme") == "dark"
        assert browser.execute_script("return getComputedStyle(document.body).backgroundColor") != light
        # nothing wider than the phone: the page scrolls down, never sideways (the runs table scrolls in its box)
        for path in ("/runs/1", "/runs", "/"):
            browser.get(f"{served.base}{path}")
            WebDriverWait(browser, 20).until(lambda _: browser.execute_script("return document.readyState") == "complete")
            assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1"), path
        browser.get(f"{served.base}/runs/1")
        WebDriverWait(browser, 20).until(lambda _: browser.find_elements(By.CSS_SELECTOR, "#run .marker"))
        shoot(browser, "run-phone-dark")
        assert console_errors(browser) == []
    finally:
        browser.set_window_size(1000, 860)
        browser.execute_script("localStorage.removeItem('think.theme')")


def test_in_chromium_a_keyed_server_asks_for_its_key_once(home, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with serve("-m", "tiny-reasoner", "--api-key", "sesame", env={"THINK_HOME": str(home)}) as server:
        browser.get(f"{server.base}/runs")
        form = browser.find_element(By.ID, "key-form")
        WebDriverWait(browser, 20).until(lambda _: form.is_displayed())  # the runs need the key: asked for
        assert not browser.find_elements(By.CSS_SELECTOR, "#runs-table tbody tr")
        browser.find_element(By.ID, "key-input").send_keys("sesame")
        browser.find_element(By.CSS_SELECTOR, "#key-form button").click()
        WebDriverWait(browser, 20).until(lambda _: browser.find_elements(By.CSS_SELECTOR, "#runs-table tbody tr"))
        assert not form.is_displayed()
        browser.get(f"{server.base}/")  # kept in the browser: a question goes through with it
        browser.find_element(By.ID, "prompt").send_keys(QUESTION)
        browser.find_element(By.ID, "send").click()
        WebDriverWait(browser, 60).until(
            lambda _: "thought" in browser.find_element(By.CSS_SELECTOR, ".turn.assistant .status").text)
        assert browser.find_element(By.CSS_SELECTOR, ".turn.assistant .answer").text == "5110"
        browser.execute_script("localStorage.removeItem('think.key')")
        assert console_errors(browser) == []  # no request was sent that could only be refused
