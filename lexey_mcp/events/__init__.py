"""Lexey's webhooks, received, kept and pushed to MCP clients.

- `receiver`: `POST /webhooks/lexey`, signature-checked (HMAC-SHA256) before anything is parsed.
- `store`: the durable event store, SQLite (stdlib) by default, Redis when `LEXEY_REDIS_URL` is set.
- `bus`: the SDK's `SubscriptionBus` over Redis pub/sub (fan-out across replicas), and the legacy
  `resources/subscribe` registry fed from whichever bus is in use.
- `feed`: the three put together, with a lifecycle; `surface`: the feed mapped onto an `MCPServer`; `marks`: the
  conversations a test suite's runs make, marked in the store.

Each is importable and testable without the MCP server. Nothing here imports `redis` until it is used, and this
package imports none of them: the server takes only the light `model` on a plain start.
"""
