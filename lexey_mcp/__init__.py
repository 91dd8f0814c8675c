"""lexey-mcp: an MCP server for the Lexey customer-support platform and LeadLex's Lexi."""

__version__ = "0.1.0"
