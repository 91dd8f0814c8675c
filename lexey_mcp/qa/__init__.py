"""Agent QA: suites of customer conversations with expectations, run against the support agent.

`suite` holds a suite's types and `parsing` reads and checks a suite file (YAML or JSON) into them, `runner` runs it
through `LexeyClient` (setup steps, then the cases; `matching` searches a `matches` regex under a time limit) into a
`report`, `compare` marks each case against an earlier report, `output` renders it for people (terminal progress and
summary, JUnit XML, the tool's text) and `html` as one self-contained page, and `command` is `lexey-mcp test` (its
arguments live apart in `arguments`, light enough for every start of the command line).
Nothing here needs the MCP server; the `run_test_suite` tool maps `runner` onto MCP.
"""
