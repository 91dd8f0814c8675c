#!/bin/sh
# Claude Code: add the sandbox server (no keys needed) for you, in this project (the default "local" scope).
claude mcp add lexey-sandbox --transport stdio -- lexey-mcp --sandbox
