"""Facts about the three upstream APIs, stated once: their names, keys, key prefixes and settings."""

from __future__ import annotations

from typing import Literal, NamedTuple

#: The three upstream APIs. The customer and management chat APIs share routes and differ by key.
Api = Literal["customer", "management", "lexi"]
APIS: tuple[Api, ...] = ("customer", "management", "lexi")


class ApiFacts(NamedTuple):  # not a dataclass: the command line reads this module, and dataclasses costs ~5 ms
    name: str  # as messages name it
    key_variable: str  # the environment variable holding its key
    key_prefix: str  # every key of this API starts with it
    key_description: str
    url_variable: str  # the environment variable holding its base URL


API: dict[Api, ApiFacts] = {
    "customer": ApiFacts("Lexey customer API", "LEXEY_CUSTOMER_KEY", "lxc_", "a Lexey customer key", "LEXEY_BASE_URL"),
    "management": ApiFacts(
        "Lexey management API", "LEXEY_MANAGEMENT_KEY", "lxm_", "a Lexey management key", "LEXEY_BASE_URL"
    ),
    "lexi": ApiFacts(
        "Lexi API", "LEXI_API_KEY", "wbk_", "a LeadLex workspace key with the Lexi permission", "LEXI_BASE_URL"
    ),
}
