"""Tool arguments checked before a tool runs, every problem answered in one voice: the argument, what is allowed.

The SDK validates arguments inside `Tool.run` and answers a failure with a pydantic dump (and an
errors.pydantic.dev link); it also ignores arguments a tool does not declare, so a typo would silently drop input.
`check_arguments` runs first, on the same argument model, and says what is wrong the way a person would.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, cast

from mcp.server.mcpserver.utilities.func_metadata import FuncMetadata
from pydantic import ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

from .validation import _CONTROL, LEXI_CONTEXT_KEYS

_KINDS = {
    "string_type": "a string",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "list_type": "a list of strings",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
}


#: An answer about bad arguments names at most this many of them (or problems), each name cut at `_NAME_CHARS`.
_SHOWN = 10
_NAME_CHARS = 40


def _name(name: object) -> str:
    text = str(name)
    return text if len(text) <= _NAME_CHARS else text[:_NAME_CHARS] + "…"


def _first(items: list[str], sep: str, more: str) -> str:
    """The first `_SHOWN` items joined by `sep`, then `more` (a format of the count left out) when some are."""
    rest = len(items) - _SHOWN
    return sep.join(items[:_SHOWN] + ([more.format(rest)] if rest > 0 else []))


def plain_text(value: str) -> str:
    """An `AfterValidator` for text arguments: whitespace alone is as empty as nothing; no control characters."""
    if not value.strip():
        raise PydanticCustomError("blank", "blank")
    if _CONTROL.search(value):
        raise PydanticCustomError("control_characters", "control characters")
    return value


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _amount(value: object) -> str:
    """A number as sent, unless it has more digits than a person reads (or than Python prints: ~4,300)."""
    if isinstance(value, int) and value.bit_length() > 64:
        return "far more" if value > 0 else "far less"
    return str(value)


def _where(loc: tuple[int | str, ...]) -> str:
    """`messages[2]` reads as "messages item 3"; `context.owner` stays dotted."""
    name = str(loc[0])
    for part in loc[1:]:
        name += f" item {part + 1}" if isinstance(part, int) else f".{part}"
    return name


def describe(tool: str, error: ErrorDetails) -> str:
    """One sentence for one pydantic error, naming the argument and what is allowed."""
    kind, loc, ctx = error["type"], error["loc"], error.get("ctx") or {}
    where = _where(loc) if loc else "the arguments"
    value = error.get("input")
    if kind == "missing":
        return f"{tool} needs {where}; it is missing."
    if kind in _KINDS:
        return f"{where} must be {_KINDS[kind]}, not {_json_kind(value)}."
    if kind == "string_too_short":
        return f"{where} must not be empty."
    if kind == "blank":
        return f"{where} is blank; write some text."
    if kind == "control_characters":
        return f"{where} contains control characters; remove them."
    if kind == "string_too_long":
        length = f" is {len(value):,} characters;" if isinstance(value, str) else ""
        return f"{where}{length} the limit is {ctx.get('max_length', 0):,} characters."
    if kind in ("too_short", "too_long"):
        count = len(value) if isinstance(value, list) else "another number"
        bound = f"at least {ctx.get('min_length')}" if kind == "too_short" else f"at most {ctx.get('max_length')}"
        return f"{where} takes {bound} item(s); it has {count}."
    if kind == "extra_forbidden" and len(loc) >= 2 and loc[0] == "context":
        return f"context has an unknown key {_name(loc[-1])!r}; accepted: {', '.join(sorted(LEXI_CONTEXT_KEYS))}."
    if kind == "extra_forbidden":
        return f"{where} is not accepted here."
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        bound = next(iter(ctx.values()), "")
        relation = {"greater_than_equal": "at least", "greater_than": "more than"}.get(kind, "")
        relation = relation or {"less_than_equal": "at most", "less_than": "less than"}[kind]
        return f"{where} must be {relation} {bound}; it is {_amount(value)}."
    if kind == "string_unicode":
        return f"{where} is not valid Unicode text (it holds a lone surrogate)."
    if kind == "string_pattern_mismatch":
        return f"{where} does not have the expected form ({ctx.get('pattern', '')})."
    return f"{where} is not valid for {tool}."


def strict(metadata: FuncMetadata) -> Callable[[dict[str, Any]], object]:
    """A tool's argument validation (the SDK's `FuncMetadata`), strict: a number is a JSON number and true/false a
    JSON boolean, so "5" or true for a whole number, or "true" or 1 for a boolean, is refused, not guessed at. A
    list or object sent as JSON text is still read as the SDK reads it (some hosts send them so)."""
    return lambda arguments: metadata.arg_model.model_validate(metadata.pre_parse_json(arguments), strict=True)


def check_arguments(
    tool: str, arguments: Mapping[str, Any], accepted: set[str], validate: Callable[[dict[str, Any]], object]
) -> str | None:
    """None when `arguments` are fine for `tool`, else what is wrong (every problem, one per line).

    `validate` is the tool's argument validation: `strict(...)` of the SDK's `FuncMetadata` for every tool."""
    unknown = sorted(set(arguments) - accepted)
    if unknown:
        names = _first([_name(name) for name in unknown], ", ", "and {:,} more")
        return f"Unknown argument(s) for {tool}: {names}. Accepted: {', '.join(sorted(accepted)) or 'none'}."
    try:
        validate(dict(arguments))
    except ValidationError as exc:
        lines = list(dict.fromkeys(describe(tool, e) for e in exc.errors(include_url=False)))
        return _first(lines, "\n", "and {:,} more problems.")
    return None


_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SUBSCHEMAS = ("items", "additionalProperties", "not")
_DEFS = "#/$defs/"


def compact_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A tool's input schema as a model should read it: the same constraints (types, bounds, formats, enums,
    required, additionalProperties), without pydantic's noise. Titles go (every field's repeats its name); an
    optional field's `anyOf [T, null]` with `default: null` becomes T, and a default of null or "" goes (omitting it
    is how a caller leaves it out); `$defs` are inlined where they are used."""
    defs = cast(dict[str, Any], schema.get("$defs", {}))

    def walk(node: dict[str, Any]) -> dict[str, Any]:
        options = node.get("anyOf")
        if isinstance(options, list) and "default" in node and node["default"] is None:
            others = [o for o in options if o != {"type": "null"}]
            if len(others) == 1:  # optional T: T, omitted when not given
                node = {**others[0], **{k: v for k, v in node.items() if k != "anyOf"}}
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(_DEFS):
            node = {**defs[ref.removeprefix(_DEFS)], **{k: v for k, v in node.items() if k != "$ref"}}
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in ("title", "$defs") or (key == "default" and value in (None, "")):
                continue
            if key == "properties" and isinstance(value, dict):
                value = {name: walk(field) for name, field in value.items()}
            elif key in _SUBSCHEMA_LISTS and isinstance(value, list):
                value = [walk(v) if isinstance(v, dict) else v for v in value]
            elif key in _SUBSCHEMAS and isinstance(value, dict):
                value = walk(value)
            out[key] = value
        return out

    return walk(schema)
