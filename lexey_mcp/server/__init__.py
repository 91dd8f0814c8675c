"""The MCP server, mapped thinly onto `LexeyClient`: validation and mapping only.

Every upstream failure that happens before a stream starts, a missing or wrong key, and bad input come back as tool
errors (`isError`) whose text says what to do; a stream that ends in an error or early is a normal result with
`outcome` "error" / "partial" and the text so far.

- `build`: `build_server` and its options; the lifespan, middleware order, the events glue.
- `tools/`: the tool bodies, a module per toolset, each with its table; `tools.TOOLS` is all of them.
- `registration`: a tool's table entry, the one error mapping, the argument checks before a tool runs.
- `output_schemas` (with `output_schemas.json`): each tool's output schema, derived from its result model once.
- `state`, `parameters`: what a call reaches through its context; the argument types tools share.
- `rendering`, `progress`, `consent`, `outgoing`: a result's text, progress while it streams, asking the user
  before a change, and the redaction and cutting of everything sent back.
- `view` (with `view.html`): the MCP Apps page of a report, and the rendered report hosts that render apps get.
- `prompts`: the workflow prompt.
- `auth`, `single_use`: who may call over HTTP; confirmations used once.
"""

from .build import INSTRUCTIONS, ServerOptions, build_server
from .state import AppState
from .tools import TOOLS

__all__ = ["INSTRUCTIONS", "TOOLS", "AppState", "ServerOptions", "build_server"]
