"""Fault injection: the `Fault` model, its FIFO queue, and how a fault reshapes a stream or replaces a response."""

from __future__ import annotations

import http
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator, model_validator

from .wire import BOM, DONE, Chunking, Frame, LineEnding, chunk, encode_frame

Target = Literal["customer", "management", "lexi", "any"]
RouteKind = Literal["customer", "management", "lexi"]


class Fault(BaseModel):
    """One misbehaviour, applied to the next `times` stream requests whose route matches `target`.

    Stream shaping (counts are events, 1-based, `[DONE]` included for drop/stall): `chunking`, `line_ending`,
    `comments`, `bom`, `id_gaps`, `malformed_json_at`, `error_at`, `drop_after`, `end_without_done`,
    `stall_after`/`stall_seconds`, `drip_seconds`, `content_type`.
    Replacing the response: `status` (+ `html_error`, `retry_after`, `content_type`) answers a pre-stream error;
    `raw_chunks` serves exactly those body writes (str items are encoded as latin-1, so "\\xff" is byte 0xFF;
    bytes items are sent as is). Only `drip_seconds`, `stall_after`, `drop_after` (counted in chunks) and
    `content_type` apply to raw chunks.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    target: Target = "any"
    times: int = Field(default=1, ge=1)
    chunking: Chunking = "event"
    line_ending: LineEnding = "lf"
    comments: bool = False
    bom: bool = False
    id_gaps: bool = False
    malformed_json_at: int | None = Field(default=None, ge=1)
    error_at: int | None = Field(default=None, ge=0)
    drop_after: int | None = Field(default=None, ge=0)
    end_without_done: bool = False
    stall_after: int | None = Field(default=None, ge=0)
    stall_seconds: float = Field(default=3600.0, ge=0)
    drip_seconds: float | None = Field(default=None, ge=0)
    status: int | None = Field(default=None, ge=400, le=599)
    html_error: bool = False
    retry_after: str | None = None
    raw_chunks: list[bytes] | None = None
    content_type: str | None = None

    @field_validator("raw_chunks", mode="before")
    @classmethod
    def _latin1(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [item.encode("latin-1") if isinstance(item, str) else item for item in value]
        return value

    @field_serializer("raw_chunks")
    def _dump_latin1(self, value: list[bytes] | None) -> list[str] | None:
        return None if value is None else [item.decode("latin-1") for item in value]

    @model_validator(mode="after")
    def _needs_status(self) -> Fault:
        if self.html_error and self.status is None:
            raise ValueError("html_error needs a status")
        if self.status is not None and self.raw_chunks is not None:
            raise ValueError("status and raw_chunks are exclusive")
        return self


@dataclass
class _Queued:
    fault: Fault
    remaining: int


class FaultQueue:
    """Faults wait here in order; the first one whose target matches a stream request is applied to it."""

    def __init__(self) -> None:
        self._queue: list[_Queued] = []

    def push(self, fault: Fault) -> None:
        self._queue.append(_Queued(fault, fault.times))

    def take(self, kind: RouteKind) -> Fault | None:
        for queued in self._queue:
            if queued.fault.target in (kind, "any"):
                queued.remaining -= 1
                if queued.remaining == 0:
                    self._queue.remove(queued)
                return queued.fault
        return None

    def clear(self) -> int:
        count = len(self._queue)
        self._queue.clear()
        return count

    def pending(self) -> list[tuple[Fault, int]]:
        return [(queued.fault, queued.remaining) for queued in self._queue]

    def __len__(self) -> int:
        return len(self._queue)


def html_page(status: int) -> bytes:
    """An error page as a reverse proxy would serve it."""
    try:
        title = f"{status} {http.HTTPStatus(status).phrase}"
    except ValueError:
        title = str(status)
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n"
        "<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    ).encode()


@dataclass(frozen=True)
class StreamPlan:
    """What to put on the wire: encoded events (or raw chunks) and the timing/abort rules around them."""

    events: list[bytes]
    chunking: Chunking = "event"
    delay: float = 0.0
    drip: float = 0.0
    stall_after: int | None = None
    stall_seconds: float = 0.0
    drop_after: int | None = None


def plan_stream(events: list[Frame], *, error: Frame, numbered: bool, delay: float, fault: Fault | None) -> StreamPlan:
    """Apply a fault (or none) to a response's events. `numbered` streams carry `id:` 1, 2, 3…"""
    if fault is None:
        fault = Fault()
    if fault.raw_chunks is not None:
        return StreamPlan(
            events=[c for c in fault.raw_chunks if c],
            drip=fault.drip_seconds or 0.0,
            stall_after=fault.stall_after,
            stall_seconds=fault.stall_seconds,
            drop_after=fault.drop_after,
        )
    frames = list(events)
    if fault.error_at is not None:
        frames = [*frames[: fault.error_at], error]
    if fault.malformed_json_at is not None and fault.malformed_json_at <= len(frames):
        index = fault.malformed_json_at - 1
        bad = frames[index]
        # Cutting a JSON object anywhere before its closing brace never leaves valid JSON.
        frames[index] = Frame(data=bad.data[: max(1, len(bad.data) // 2)], event=bad.event)
    if not fault.end_without_done:
        frames.append(Frame(data=DONE))
    if numbered or fault.id_gaps:
        next_id = 1
        numbered_frames = []
        for position, frame in enumerate(frames):
            numbered_frames.append(Frame(data=frame.data, event=frame.event, id=next_id))
            next_id += 2 if fault.id_gaps and position % 2 == 1 else 1
        frames = numbered_frames
    encoded = [encode_frame(f, line_ending=fault.line_ending, comments=fault.comments) for f in frames]
    if fault.bom and encoded:
        encoded[0] = BOM + encoded[0]
    return StreamPlan(
        events=encoded,
        chunking=fault.chunking,
        delay=delay,
        drip=fault.drip_seconds or 0.0,
        stall_after=fault.stall_after,
        stall_seconds=fault.stall_seconds,
        drop_after=fault.drop_after,
    )


def writes(plan: StreamPlan, index: int) -> list[bytes]:
    """The body writes for event `index` of a plan."""
    return chunk(plan.events[index], plan.chunking)
