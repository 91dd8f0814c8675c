"""The HTTP paths this server serves, each stated once. No imports: the command line's help reads them before
anything heavy loads."""

#: The streamable-HTTP MCP endpoint.
MCP_PATH = "/mcp"
#: Lexey's signed webhooks (on the MCP port, or on the stdio-mode webhook listener).
WEBHOOK_PATH = "/webhooks/lexey"
HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
METRICS_PATH = "/metrics"
