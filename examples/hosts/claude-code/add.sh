#!/bin/sh
# Claude Code: add the server with your keys, taken from this shell's environment (export them first).
# Claude Code stores the values in your user configuration (~/.claude.json), not in the project. To keep keys
# out of every file, copy mcp.json to the project's .mcp.json instead: Claude Code expands ${VAR} there.
# The name comes right after `add`: --env takes several values and would swallow a name placed after it.
claude mcp add lexey --transport stdio --scope user \
  --env LEXEY_CUSTOMER_KEY="${LEXEY_CUSTOMER_KEY:?export LEXEY_CUSTOMER_KEY first}" \
  --env LEXEY_MANAGEMENT_KEY="${LEXEY_MANAGEMENT_KEY:?export LEXEY_MANAGEMENT_KEY first}" \
  --env LEXI_API_KEY="${LEXI_API_KEY:?export LEXI_API_KEY first}" \
  -- lexey-mcp
