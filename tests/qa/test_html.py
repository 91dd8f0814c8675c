"""The HTML report: rendered by a real headless Chromium (its cases read back from the DOM once the page's script
ran, a screenshot checked for content), and upstream text escaped so that a reply cannot add markup."""

from __future__ import annotations

import base64
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from lexey_mcp.qa.html import html_report
from lexey_mcp.qa.report import CaseReport, Check, Failure, RunReport, SetupStep, SuiteReport, TurnReport
from tests.browser import DevTools, rendered_dom, screenshot
from tests.processes import SERVER, clean_env

SUITES = Path(__file__).resolve().parents[2] / "examples" / "suites"
FAIL_RED = (0xB3, 0x26, 0x1E)


class Elements(HTMLParser):
    """Every element's tag, attributes and the text directly inside it (in document order)."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str], list[str]]] = []
        self._open: list[int] = []
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, {k: v or "" for k, v in attrs}, []))
        if tag not in ("meta", "input", "br", "link", "img"):
            self._open.append(len(self.found) - 1)

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            if self.found[self._open.pop()][0] == tag:
                break

    def handle_data(self, data: str) -> None:
        for index in self._open:  # the text of an element includes its children's
            self.found[index][2].append(data)

    def text(self, tag: str, **attrs: str) -> list[str]:
        return [
            "".join(text)
            for t, a, text in self.found
            if t == tag
            and all(a.get(k.rstrip("_")) == v or v in a.get(k.rstrip("_"), "").split() for k, v in attrs.items())
        ]

    def tags(self, tag: str) -> int:
        return sum(t == tag for t, _, _ in self.found)


def html_of(example: str, tmp_path: Path, status: int) -> Path:
    """The HTML report `lexey-mcp test` writes of an example suite (run twice per case against the sandbox), which
    exits with `status`."""
    page = tmp_path / "report.html"
    command = [*SERVER, "test", str(SUITES / example), "--sandbox", "--delay", "0", "--repeat", "2"]
    done = subprocess.run(
        [*command, "--html", str(page)], capture_output=True, text=True, env=clean_env(), timeout=120, check=False
    )
    assert done.returncode == status, done.stdout + done.stderr
    return page


@pytest.mark.e2e
def test_the_report_of_a_failing_suite_renders_in_chromium(tmp_path: Path) -> None:
    page = html_of("fails-on-purpose.yaml", tmp_path, status=1)
    dom = Elements(rendered_dom(page, tmp_path / "profile"))
    assert ("html", {"lang": "en", "data-ready": "yes"}) in [(t, a) for t, a, _ in dom.found]  # the script ran
    assert dom.text("h1") == ["Acme support (fails on purpose)"]
    assert dom.text("p", class_="verdict") == ["FAILED: 3 cases, 6 runs, 4 failed."]
    cells = dom.text("td")
    rows = [cells[i : i + 4] for i in range(0, len(cells), 4)]
    assert [(name, rate, escalated) for name, rate, _, escalated in rows] == [
        ("pricing", "PASS 2/2 (100%)", "0/2"),
        ("student discount", "FAIL 0/2 (0%)", "0/2"),
        ("cancellation escalates", "FAIL 0/2 (0%)", "0/2"),
    ]
    assert all(float(seconds) >= 0 for _, _, seconds, _ in rows)
    setup = dom.text("li", class_="setup-step")
    assert len(setup) == 2
    assert "Always escalate if a customer mentions legal issues." in setup[1]
    assert "Escalation rules updated (1 new rule)." in setup[1]
    cases = [a["data-case"] for t, a, _ in dom.found if t == "section"]
    assert cases == ["pricing", "student discount", "cancellation escalates"]
    checks = [" ".join(c.split()) for c in dom.text("li", class_="check")]
    discount = [c for c in checks if c.startswith("FAIL contains '50% off'")]
    assert len(discount) == 2  # the expectation, marked at its turn in each run, with the reply that failed it
    assert all("missing '50% off'; reply: \"Here's what I can tell you about pricing:" in c for c in discount)
    assert checks.count("PASS contains '$12'") == 2  # pricing, at its turn, in each of its two runs
    assert sum(c.startswith("FAIL escalated") for c in checks) == 2

    phone = screenshot(page, tmp_path / "profile", tmp_path / "phone.png", 390, 844)
    assert (phone.width, phone.height) == (390, 844)
    background = phone.pixels[0]
    assert sum(p != background for p in phone.pixels) > 0.02 * len(phone.pixels)  # text, not a blank page
    assert any(p == FAIL_RED for p in phone.pixels)  # a FAIL mark in the summary, above the fold on a phone
    right = [p for y in range(phone.height) for p in phone.pixels[y * phone.width + 380 : (y + 1) * phone.width]]
    assert right.count(background) > 0.9 * len(right)  # nothing runs off the right edge of a phone's screen


HOSTILE = '</pre><script>document.title="owned"</script><img src=x onerror=alert(1)>\x00\x1b[31m & "quotes"'


def _hostile_report() -> SuiteReport:
    turn = TurnReport(
        say=HOSTILE,
        reply=HOSTILE,
        seconds=0.1,
        escalated=False,
        checks=[Check(expectation="contains", wanted=f"contains {HOSTILE!r}")],
    )
    run = RunReport(
        passed=False,
        conversation_id=HOSTILE,
        seconds=0.1,
        failures=[Failure(turn=1, expectation="contains", detail=HOSTILE)],
        turns=[turn],
    )
    case = CaseReport(name=HOSTILE, passed=False, pass_rate=0, flaky=False, runs=[run])
    step = SetupStep(instruction=HOSTILE, reply=HOSTILE, outcome="not applied")
    return SuiteReport(name=HOSTILE, passed=False, setup=[step], cases=[case], interrupted=HOSTILE)


def test_upstream_text_cannot_add_markup() -> None:
    page = html_report(_hostile_report(), HOSTILE)
    assert "<img" not in page
    assert page.count("<script>") == 1  # the report's own
    assert "\x00" not in page
    assert "\x1b" not in page
    assert "\\x00\\x1b[31m" in page  # control characters shown, as on a terminal


@pytest.mark.e2e
def test_upstream_text_renders_as_text_in_chromium(tmp_path: Path) -> None:
    page = tmp_path / "hostile.html"
    page.write_text(html_report(_hostile_report(), HOSTILE), encoding="utf-8")
    dom = Elements(rendered_dom(page, tmp_path / "profile"))
    assert dom.tags("img") == 0
    assert dom.tags("script") == 1
    shown = HOSTILE.replace("\x00", "\\x00").replace("\x1b", "\\x1b")
    assert dom.text("title") == [shown + ": failed"]
    assert dom.text("div", class_="reply") == ["Management agent" + shown, "Agent · 0.10s" + shown]
    assert any(shown in text for text in dom.text("li", class_="check"))


@pytest.mark.e2e
def test_printing_opens_every_run_and_hides_the_switch(tmp_path: Path) -> None:
    page = html_of("refunds-over-100.yaml", tmp_path, status=0)
    browser = DevTools(page, tmp_path / "profile")
    try:
        browser.wait_for("document.documentElement?.dataset.ready === 'yes'")
        runs = "[...document.querySelectorAll('details.run')].map(d => d.open)"
        assert browser.evaluate(runs) == [False] * 6  # passed runs are folded on screen
        pdf = base64.b64decode(browser.send("Page.printToPDF", session=True)["data"])
        assert pdf.startswith(b"%PDF-")
        assert pdf.count(b"/Type /Page") - pdf.count(b"/Type /Pages") >= 2  # pages: the runs' transcripts too
        assert browser.evaluate(runs) == [True] * 6  # printing opened every run first
        browser.send("Emulation.setEmulatedMedia", session=True, media="print")
        switch = "getComputedStyle(document.getElementById('only-failures-label')).display"
        assert browser.evaluate(switch) == "none"
    finally:
        browser.close()
