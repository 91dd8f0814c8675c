"""Agent QA: suites of customer conversations with expectations, run against the support agent.

`suite` parses and checks a suite file (YAML or JSON), `runner` runs it through `LexeyClient` into a `report`,
`output` renders the report (terminal progress and table, JUnit XML), `command` is `lexey-mcp test` (its
arguments live apart in `arguments`, light enough for every start of the command line).
Nothing here needs the MCP server; the `run_test_suite` tool maps `runner` onto MCP.
"""
