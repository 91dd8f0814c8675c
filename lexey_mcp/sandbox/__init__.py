"""An embedded, deterministic Lexey + Lexi simulator: a real HTTP server for demos, offline agents and tests.

    async with Sandbox(SandboxConfig(delay=0)) as sb:
        os.environ.update(sb.env())      # point a client at it
        sb.inject(Fault(target="lexi", status=429, retry_after="0"))

Wire choices where the vendor docs are silent: chat streams number events `id: 1, 2, …` (with `[DONE]`
numbered too); Lexi streams carry no `id:` lines (unless a fault adds gapped ones). On the chat APIs a
key that is not `lxc_`/`lxm_` (e.g. `wbk_`) is 401, the other Lexey key type is 403. Admin endpoints:
`GET /_sandbox/stats`, `GET|POST|DELETE /_sandbox/faults` (no auth; bearer keys are redacted there).
"""

from .config import SandboxConfig
from .faults import Fault
from .server import CUSTOMER_KEY, LEXI_KEY, MANAGEMENT_KEY, Sandbox, banner, client_env, serve, settings_for
from .store import CloseReason, RequestRecord, SandboxStats

__all__ = [
    "CUSTOMER_KEY",
    "LEXI_KEY",
    "MANAGEMENT_KEY",
    "CloseReason",
    "Fault",
    "RequestRecord",
    "Sandbox",
    "SandboxConfig",
    "SandboxStats",
    "banner",
    "client_env",
    "serve",
    "settings_for",
]
