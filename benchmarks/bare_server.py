"""The baseline for the cold-start and overhead benchmarks: a bare SDK server with one tool.

python benchmarks/bare_server.py             # stdio
python benchmarks/bare_server.py http PORT   # streamable HTTP at http://127.0.0.1:PORT/mcp
"""

import sys

from mcp.server import MCPServer

server = MCPServer("bare")


@server.tool()
async def echo(text: str) -> str:
    """Say it back."""
    return text


if __name__ == "__main__":
    if sys.argv[1:2] == ["http"]:
        server.run(transport="streamable-http", host="127.0.0.1", port=int(sys.argv[2]), streamable_http_path="/mcp")
    else:
        server.run()
