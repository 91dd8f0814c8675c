"""The HTML report (`lexey-mcp test --html FILE`): one self-contained page, for people reviewing an agent's answers.

Inline CSS and script only, and a Content-Security-Policy that forbids loading anything, so the file opens anywhere
(a CI artifact, an e-mail) and cannot reach the network. Every upstream word (replies, and the suite's own text) is
escaped. Readable on a phone (one column, tables scroll sideways) and printed (every run expanded, no colours
needed to tell a pass from a failure: each mark says PASS or FAIL).
"""

from __future__ import annotations

import html
import re

from .report import CaseReport, Failure, RunReport, SetupStep, SuiteReport, TurnReport

# Control characters (a reply may hold an ANSI escape, a NUL) are shown as `\x1b`, as on a terminal; lone
# surrogates and non-characters, which an HTML document must not carry, as U+FFFD.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_NOT_HTML = re.compile("[\ud800-\udfff\ufffe\uffff]")

_CSS = """
:root { --ok: #137333; --bad: #b3261e; --muted: #5f6368; --line: #dadce0; --bg: #f8f9fa; }
* { box-sizing: border-box; }
body { font: 16px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #202124; margin: 0 auto;
  max-width: 60rem; padding: 1rem; overflow-wrap: anywhere; }
h1 { font-size: 1.5rem; margin: 0 0 .25rem; } h2 { font-size: 1.2rem; margin: 1.5rem 0 .5rem; }
.verdict { font-weight: 700; padding: .5rem .75rem; border-radius: .4rem; background: var(--bg); }
.verdict.passed { color: var(--ok); } .verdict.failed, .interrupted { color: var(--bad); }
.scroll { overflow-x: auto; } table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .35rem .5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { overflow-wrap: normal; white-space: nowrap; } td.num { text-align: right; white-space: nowrap; }
.mark { font-weight: 700; white-space: nowrap; } .mark.pass { color: var(--ok); } .mark.fail { color: var(--bad); }
details.run { border: 1px solid var(--line); border-radius: .4rem; margin: .5rem 0; padding: .25rem .75rem; }
details.run > summary { cursor: pointer; padding: .25rem 0; }
.say, .reply { white-space: pre-wrap; margin: .4rem 0; padding: .5rem .75rem; border-radius: .6rem; }
.say { background: #e8f0fe; margin-right: 15%; } .reply { background: var(--bg); margin-left: 15%; }
.who { display: block; font-size: .8rem; color: var(--muted); }
ul.checks { margin: .25rem 0 .75rem; padding-left: 1.25rem; } .muted { color: var(--muted); }
#only-failures-label { display: block; margin: .5rem 0; }
body.only-failures .case.passed { display: none; }
@media (max-width: 40rem) {
  body { font-size: 15px; padding: .6rem; } .say { margin-right: 0; } .reply { margin-left: 0; }
  th, td { padding: .3rem; }
}
@media print {
  body { max-width: none; font-size: 11pt; } #only-failures-label { display: none; }
  .case, .run, li { break-inside: avoid; } .say, .reply, .verdict { background: none; border: 1px solid #999; }
  body.only-failures .case.passed { display: block; }
}
"""

# Opens every run before printing (a closed <details> prints only its summary) and wires the failures-only switch.
_SCRIPT = """
(function () {
  var runs = document.querySelectorAll("details.run");
  window.addEventListener("beforeprint", function () { runs.forEach(function (d) { d.open = true; }); });
  var box = document.getElementById("only-failures");
  box.addEventListener("change", function () { document.body.classList.toggle("only-failures", box.checked); });
  document.documentElement.setAttribute("data-ready", "yes");
})();
"""

_POLICY = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'"


def _e(text: str) -> str:
    visible = _CONTROL.sub(lambda found: f"\\x{ord(found[0]):02x}", _NOT_HTML.sub("\ufffd", text))
    return html.escape(visible, quote=True)


def _rate(case: CaseReport) -> str:
    return f"{sum(r.passed for r in case.runs)}/{len(case.runs)} ({case.pass_rate:.0%})"


def _mark(passed: bool) -> str:
    return '<span class="mark pass">PASS</span>' if passed else '<span class="mark fail">FAIL</span>'


def html_report(report: SuiteReport, title: str) -> str:
    """The report as one HTML document."""
    verdict = "passed" if report.passed else "failed"
    parts = [
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_POLICY}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}: {verdict}</title><style>{_CSS}</style></head><body>",
        f"<header><h1>{_e(title)}</h1>{_verdict(report)}</header>",
        _summary(report),
        _setup(report.setup),
        _baseline(report),
        '<label id="only-failures-label"><input type="checkbox" id="only-failures"> Show failed cases only</label>',
        *(_case(case) for case in report.cases),
        f"<script>{_SCRIPT}</script></body></html>\n",
    ]
    return "\n".join(part for part in parts if part)


def _verdict(report: SuiteReport) -> str:
    runs = [r for c in report.cases for r in c.runs]
    failed = sum(not r.passed for r in runs)
    text = f"{len(report.cases)} cases, {len(runs)} runs, {failed} failed"
    state = "PASSED" if report.passed else "FAILED"
    stopped = f'<p class="interrupted">Interrupted: {_e(report.interrupted)}</p>' if report.interrupted else ""
    return f'<p class="verdict {state.lower()}">{state}: {text}.</p>{stopped}'


def _summary(report: SuiteReport) -> str:
    if not report.cases:
        return '<p class="muted">No case ran.</p>'
    changes = {c.name: c.change for c in report.baseline or ()}
    head = "<th>Case</th><th>Pass rate</th><th>Median s</th><th>Escalated</th>"
    head += "<th>Against baseline</th>" if report.baseline is not None else ""
    rows = []
    for case in report.cases:
        escalated = sum(r.escalated for r in case.runs)
        cells = (
            f'<td><a href="#{_anchor(case.name)}">{_e(case.name)}</a></td>'
            f'<td class="num">{_mark(case.passed)} {_rate(case)}</td>'
            f'<td class="num">{case.median_seconds:.2f}</td><td class="num">{escalated}/{len(case.runs)}</td>'
        )
        if report.baseline is not None:
            cells += f"<td>{_e(changes.get(case.name, ''))}</td>"
        rows.append(f'<tr class="summary-row">{cells}</tr>')
    return f'<h2>Summary</h2><div class="scroll"><table id="summary"><thead><tr>{head}</tr></thead>' + (
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _setup(steps: list[SetupStep]) -> str:
    if not steps:
        return ""
    items = []
    for step in steps:
        failures = "".join(f"<li>{_e(_failure(f))}</li>" for f in step.failures)
        items.append(
            f'<li class="setup-step" data-outcome="{_e(step.outcome)}">{_mark(step.outcome == "applied")} '
            f"<strong>{_e(step.outcome)}</strong>"
            f'<div class="say"><span class="who">Instruction</span>{_e(step.instruction)}</div>'
            f'<div class="reply"><span class="who">Management agent</span>{_e(step.reply)}</div>'
            f"{f'<ul class=checks>{failures}</ul>' if failures else ''}</li>"
        )
    return f'<h2>Setup</h2><ol id="setup">{"".join(items)}</ol>'


def _baseline(report: SuiteReport) -> str:
    if report.baseline is None:
        return ""
    gone = [c for c in report.baseline if c.change == "not run"]
    new = len(report.new_failures)
    text = f"{new} new failure{'' if new == 1 else 's'} against the baseline."
    if gone:
        text += " Not run this time: " + ", ".join(_e(c.name) for c in gone) + "."
    return f'<h2>Against the baseline</h2><p id="baseline">{text}</p>'


def _anchor(name: str) -> str:
    return "case-" + re.sub(r"[^A-Za-z0-9_-]", lambda m: f"_{ord(m[0]):x}", name)


def _case(case: CaseReport) -> str:
    state = "passed" if case.passed else "failed"
    runs = "".join(_run(run, i, len(case.runs)) for i, run in enumerate(case.runs, 1))
    return (
        f'<section class="case {state}" id="{_anchor(case.name)}" data-case="{_e(case.name)}">'
        f"<h2>{_mark(case.passed)} {_e(case.name)} <span class=muted>{_rate(case)}</span></h2>{runs}</section>"
    )


def _run(run: RunReport, number: int, runs: int) -> str:
    label = f"Run {number} of {runs}" if runs > 1 else "Run"
    conversation = f" · conversation {_e(run.conversation_id)}" if run.conversation_id else ""
    turns = "".join(_turn(turn, i, run.failures) for i, turn in enumerate(run.turns, 1))
    stray = [f for f in run.failures if f.turn > len(run.turns)]  # the turn whose request failed has no reply
    if stray:
        turns += '<ul class="checks">' + "".join(f"<li>{_mark(False)} {_e(_failure(f))}</li>" for f in stray) + "</ul>"
    return (
        f'<details class="run"{"" if run.passed else " open"}><summary>{_mark(run.passed)} {label} · '
        f"{run.seconds:.2f}s{conversation}</summary>{turns}</details>"
    )


def _turn(turn: TurnReport, number: int, failures: list[Failure]) -> str:
    failed = [f for f in failures if f.turn == number]
    marks = []
    for check in turn.checks:
        unmet = [f for f in failed if f.expectation == check.expectation]
        detail = "".join(f"<br><span class=muted>{_e(f.detail)}</span>" for f in unmet)
        marks.append(f'<li class="check">{_mark(not unmet)} {_e(check.wanted)}{detail}</li>')
    known = {c.expectation for c in turn.checks}
    marks += [f'<li class="check">{_mark(False)} {_e(_failure(f))}</li>' for f in failed if f.expectation not in known]
    escalated = " · escalated" if turn.escalated else ""
    return (
        f'<div class="turn"><div class="say"><span class="who">Customer · turn {number}</span>{_e(turn.say)}</div>'
        f'<div class="reply"><span class="who">Agent · {turn.seconds:.2f}s{escalated}</span>{_e(turn.reply)}</div>'
        f'<ul class="checks">{"".join(marks)}</ul></div>'
    )


def _failure(failure: Failure) -> str:
    return f"turn {failure.turn} {failure.expectation}: {failure.detail}"
