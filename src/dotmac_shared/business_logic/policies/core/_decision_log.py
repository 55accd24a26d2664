"""Decision log: opt-in, sampled, redacted recording of policy decisions.

An engine given a :class:`DecisionRecorder` hands it every result it produces
(``PolicyEngine(recorder=...)``); without one, the evaluation paths do one ``None`` check
and nothing else. A recorder built on :class:`BufferedDecisionRecorder`:

* keeps a decision with probability ``sample_rate`` (drawn from its own ``random.Random``,
  seedable for tests): 0 records nothing, 1 everything;
* replaces the input values at the ``redact`` paths (``card.number``, ``contacts[0].email``)
  with :data:`REDACTED` in its copy; the caller's input is never modified;
* takes the time from an injected :class:`~dotmac_shared.business_logic.clock.Clock`;
* appends a snapshot to an in-memory buffer (a few microseconds) and writes it later, in
  batches: :class:`JsonLinesDecisionRecorder` (here, standard library only) on a background
  thread; :class:`~dotmac_shared.business_logic.policies.SqlDecisionRecorder`
  to the ``dotmac_policy_decisions`` table on a background task.

What is snapshotted when: the redacted input and the context's attributes are serialised
(``marshal``) when the decision is recorded, so later changes to the caller's objects do
not leak into the log. The decision itself is fixed then too. The failed rules are named
when the batch is written, from the values the evaluation captured (naming them means
building the explanation, several times the cost of the decision, so it stays off the
caller's path); a caller that changes a nested container of its input between the decision
and the next write could see that change reflected in ``failed_rules``, never in
``decision`` or ``input``.

A buffer holds at most ``max_buffered`` records: past that (a sink that cannot keep up or is
down), new decisions are counted in :attr:`BufferedDecisionRecorder.dropped` and a warning
is logged at the next flush, rather than the process running out of memory.
"""

from __future__ import annotations

import json
import logging
import marshal
import math
import random
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Final, Protocol, runtime_checkable

from dotmac_shared.business_logic.clock import Clock, as_clock
from dotmac_shared.business_logic.exceptions import InvalidInputError, PersistenceError
from dotmac_shared.business_logic.policies.core._paths import parse_path
from dotmac_shared.business_logic.policies.core._results import (
    PolicyContext,
    PolicyDecision,
    PolicyResult,
    jsonable,
)

__all__ = [
    "REDACTED",
    "BufferedDecisionRecorder",
    "DecisionRecord",
    "DecisionRecorder",
    "JsonLinesDecisionRecorder",
    "compile_redaction",
]

logger = logging.getLogger(__name__)

REDACTED: Final = "[REDACTED]"
"""What a redacted input value is replaced with in a decision record."""

_UNRECORDABLE: Final = "[UNRECORDABLE]"


@runtime_checkable
class DecisionRecorder(Protocol):
    """Receives every decision of an engine configured with it.

    ``record`` runs inside ``evaluate``/``is_allowed``: it must be fast and must not raise
    for the data's content (buffer, and write elsewhere).
    """

    def record(self, result: PolicyResult, data: Mapping[str, Any]) -> None:
        """Take note of one decision (``data`` is the caller's input; do not modify it)."""
        ...


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """One recorded decision, as written to a sink.

    Attributes:
        policy_name: The policy evaluated.
        policy_version: The version that decided.
        decision: What it decided.
        failed_rules: Names of the top-level rules that failed, in priority order.
        input: The input, with the redacted paths replaced by :data:`REDACTED`.
        context: The evaluation context (``tenant_id``, ``user_id``, ``operation``,
            ``correlation_id``, ``attributes``, ``now``), or ``None``.
        recorded_at: When it was recorded (from the recorder's clock; aware UTC).
        content_hash: SHA-256 of the version's canonical document.
        tenant_id: The context's tenant, if any.
    """

    policy_name: str
    policy_version: str
    decision: PolicyDecision
    failed_rules: tuple[str, ...]
    input: dict[str, Any]
    context: dict[str, Any] | None
    recorded_at: datetime
    content_hash: str
    tenant_id: str | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (one line of the JSON Lines log)."""
        return {
            "recorded_at": self.recorded_at.isoformat(),
            "policy_name": self.policy_name,
            "policy_version": self.policy_version,
            "content_hash": self.content_hash,
            "tenant_id": self.tenant_id,
            "decision": self.decision.value,
            "failed_rules": list(self.failed_rules),
            "input": self.input,
            "context": self.context,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DecisionRecord:
        """Read a record written by :meth:`to_dict`.

        Raises:
            InvalidInputError: A field is missing or has the wrong type (``field`` names it).
        """

        def need(key: str, kind: type | tuple[type, ...]) -> Any:
            value = data.get(key)
            if not isinstance(value, kind):
                raise InvalidInputError(
                    f"decision record field {key!r} is missing or not a "
                    f"{getattr(kind, '__name__', 'valid value')}",
                    field=key,
                )
            return value

        decision_text = need("decision", str)
        try:
            decision = PolicyDecision(decision_text)
        except ValueError as exc:
            raise InvalidInputError(
                f"decision record has an unknown decision {decision_text!r}", field="decision"
            ) from exc
        try:
            recorded_at = datetime.fromisoformat(need("recorded_at", str))
        except ValueError as exc:
            raise InvalidInputError(
                "decision record field 'recorded_at' is not an ISO datetime", field="recorded_at"
            ) from exc
        context = data.get("context")
        if context is not None and not isinstance(context, dict):
            raise InvalidInputError(
                "decision record field 'context' is not an object", field="context"
            )
        failed = need("failed_rules", list)
        tenant_id = data.get("tenant_id")
        return cls(
            policy_name=need("policy_name", str),
            policy_version=need("policy_version", str),
            decision=decision,
            failed_rules=tuple(str(name) for name in failed),
            input=need("input", dict),
            context=context,
            recorded_at=recorded_at,
            content_hash=str(data.get("content_hash") or ""),
            tenant_id=tenant_id if isinstance(tenant_id, str) else None,
        )

    def policy_context(self) -> PolicyContext | None:
        """The recorded context as a :class:`PolicyContext` (to replay the decision).

        Raises:
            InvalidInputError: The recorded context is malformed.
        """
        if self.context is None:
            return None
        values = {key: value for key, value in self.context.items() if value is not None}
        return PolicyContext.from_mapping(values)


# --- redaction ---------------------------------------------------------------------------------

Redactor = Callable[[Mapping[str, Any]], Mapping[str, Any]]


def _redact_one(value: Any, keys: tuple[str | int, ...]) -> Any:
    """``value`` with the value at ``keys`` replaced; copies only the containers on the path."""
    key, rest = keys[0], keys[1:]
    if isinstance(key, int):
        if not isinstance(value, list | tuple) or key >= len(value):
            return value
        copied: Any = list(value)
    else:
        if not isinstance(value, Mapping) or key not in value:
            return value
        copied = dict(value)
    copied[key] = _redact_one(copied[key], rest) if rest else REDACTED
    return copied


def compile_redaction(paths: Iterable[str]) -> Redactor:
    """Build ``redact(data)``: a copy of ``data`` with the values at ``paths`` replaced.

    Only the containers on a redacted path are copied; ``data`` itself is never modified.
    A path that does not resolve in some input is simply absent there (nothing to hide).

    Args:
        paths: Input paths as in rules: ``card.number``, ``contacts[0].email``.

    Returns:
        The redacting function (the identity when ``paths`` is empty).

    Raises:
        InvalidInputError: A path is not a string, is malformed, or names the context
            (``field="redact"``; the message names the path).

    Example:
        >>> redact = compile_redaction(["card.number"])
        >>> redact({"card": {"number": "4111", "brand": "visa"}})
        {'card': {'number': '[REDACTED]', 'brand': 'visa'}}
    """
    if isinstance(paths, str):
        raise InvalidInputError(
            "redact takes a list of paths, not one string",
            field="redact",
            metadata={"paths": paths},
        )
    parsed: list[tuple[str | int, ...]] = []
    for text in paths:
        try:
            path = parse_path(text)
        except ValueError as exc:
            raise InvalidInputError(
                f"cannot redact {text!r}: {exc}", field="redact", metadata={"path": str(text)}
            ) from exc
        if path.root != "input":
            raise InvalidInputError(
                f"cannot redact {text!r}: redaction paths name input fields, not the context",
                field="redact",
                metadata={"path": text},
            )
        parsed.append(path.keys)
    if not parsed:
        return _identity
    keys_list = tuple(parsed)

    def redact(data: Mapping[str, Any]) -> Mapping[str, Any]:
        value: Any = data
        for keys in keys_list:
            value = _redact_one(value, keys)
        return value  # type: ignore[no-any-return]

    return redact


def _identity(data: Mapping[str, Any]) -> Mapping[str, Any]:
    return data


# --- snapshots -----------------------------------------------------------------------------------


def _snapshot(value: Any) -> Any:
    """An immutable copy of ``value`` (marshalled bytes), or a JSON-friendly replacement."""
    try:
        return marshal.dumps(value)
    except ValueError:  # a type marshal does not know (Decimal, datetime, ...) or too deep
        pass
    try:
        return jsonable(value)
    except RecursionError:
        return {_UNRECORDABLE: "the value is nested too deeply to record"}


def _restore(snapshot: Any) -> Any:
    return marshal.loads(snapshot) if type(snapshot) is bytes else snapshot


def _json_value(value: Any) -> Any:
    """``value`` if ``json.dumps`` takes it strictly (no NaN), else a JSON-friendly copy."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return jsonable(value)
    return value


def _context_dict(context: PolicyContext, attributes: Any) -> dict[str, Any]:
    return {
        "tenant_id": context.tenant_id,
        "user_id": context.user_id,
        "operation": context.operation,
        "correlation_id": context.correlation_id,
        "attributes": {} if attributes is None else _json_value(_restore(attributes)),
        "now": context.now.isoformat() if context.now is not None else None,
    }


# (result, input snapshot, context, attributes snapshot, recorded_at)
_Entry = tuple[PolicyResult, Any, PolicyContext | None, Any, datetime]


def flush_seconds(value: object) -> float:
    """A sink's ``flush_interval``, checked: a positive number of seconds.

    Raises:
        InvalidInputError: ``value`` is not a positive number (booleans are not numbers here).
    """
    if isinstance(value, bool) or not (isinstance(value, int | float) and value > 0):
        raise InvalidInputError(
            f"flush_interval must be a positive number of seconds, got {value!r}",
            field="flush_interval",
        )
    return float(value)


class BufferedDecisionRecorder:
    """Sampling, redaction and an in-memory buffer; subclasses write the batches.

    Args:
        sample_rate: The share of decisions to record, in ``[0, 1]``.
        redact: Input paths whose values are replaced by :data:`REDACTED`.
        clock: Where ``recorded_at`` comes from; the system clock by default.
        rng: The random source of sampling (seed one for reproducible tests).
        batch_size: Records per write; reaching it wakes the writer early.
        max_buffered: Most records held in memory; later ones are dropped and counted.

    Raises:
        InvalidInputError: ``sample_rate`` outside ``[0, 1]``, a bad ``redact`` path, or a
            non-positive ``batch_size``/``max_buffered``; ``field`` names the option.
    """

    def __init__(
        self,
        *,
        sample_rate: float = 1.0,
        redact: Iterable[str] = (),
        clock: Clock | None = None,
        rng: random.Random | None = None,
        batch_size: int = 1000,
        max_buffered: int = 100_000,
    ) -> None:
        if (
            isinstance(sample_rate, bool)
            or not isinstance(sample_rate, int | float)
            or math.isnan(sample_rate)
            or not 0.0 <= sample_rate <= 1.0
        ):
            raise InvalidInputError(
                f"sample_rate must be a number from 0 to 1, got {sample_rate!r}",
                field="sample_rate",
            )
        for name, number in (("batch_size", batch_size), ("max_buffered", max_buffered)):
            if isinstance(number, bool) or not isinstance(number, int) or number < 1:
                raise InvalidInputError(
                    f"{name} must be a positive integer, got {number!r}", field=name
                )
        self.sample_rate = float(sample_rate)
        self.redact_paths = tuple(redact) if not isinstance(redact, str) else redact
        self._redact = compile_redaction(self.redact_paths)
        self._clock = as_clock(clock)
        self._random = (rng or random.Random()).random
        self.batch_size = batch_size
        self.max_buffered = max_buffered
        # Live entries, and records put back after a failed write.
        self._buffer: deque[_Entry | DecisionRecord] = deque()
        self._dropped = 0
        self._reported_dropped = 0

    @property
    def pending(self) -> int:
        """Records buffered and not yet written."""
        return len(self._buffer)

    @property
    def dropped(self) -> int:
        """Decisions not recorded because the buffer was full."""
        return self._dropped

    def record(self, result: PolicyResult, data: Mapping[str, Any]) -> None:
        """Sample, redact, snapshot and buffer one decision (see the module docstring)."""
        rate = self.sample_rate
        if rate < 1.0 and (rate <= 0.0 or self._random() >= rate):
            return
        buffer = self._buffer
        if len(buffer) >= self.max_buffered:
            self._dropped += 1
            return
        context = result.context
        attributes = (
            _snapshot(context.attributes) if context is not None and context.attributes else None
        )
        try:
            snapshot = _snapshot(self._redact(data))
        except Exception as exc:  # noqa: BLE001 - see below
            # A mapping type whose own methods raise while being copied (the decision, made
            # on the same object, already stands): the record says why its input is missing
            # rather than the caller's decision failing because of the log.
            snapshot = {_UNRECORDABLE: f"{type(exc).__name__}: {exc}"[:200]}
        buffer.append((result, snapshot, context, attributes, self._clock.now()))
        if len(buffer) == self.batch_size:
            self._batch_ready()

    def _batch_ready(self) -> None:
        """Called when the buffer reaches ``batch_size`` (wake the writer)."""

    def take(self, limit: int | None = None) -> list[DecisionRecord]:
        """Remove up to ``limit`` buffered decisions (all by default) as records, oldest first."""
        buffer = self._buffer
        count = len(buffer) if limit is None else min(limit, len(buffer))
        records = []
        for _ in range(count):
            entry = buffer.popleft()
            if type(entry) is DecisionRecord:
                records.append(entry)
                continue
            result, snapshot, context, attributes, recorded_at = entry  # type: ignore[misc]
            records.append(
                DecisionRecord(
                    policy_name=result.policy_name,
                    policy_version=result.policy_version,
                    decision=result.decision,
                    failed_rules=result.failed_rule_names,
                    input=_json_value(_restore(snapshot)),
                    context=None if context is None else _context_dict(context, attributes),
                    recorded_at=recorded_at,
                    content_hash=result.content_hash,
                    tenant_id=None if context is None else context.tenant_id,
                )
            )
        self._report_dropped()
        return records

    def _report_dropped(self) -> None:
        dropped = self._dropped
        if dropped != self._reported_dropped:
            logger.warning(
                "decision log buffer full (%d records): %d decisions were not recorded",
                self.max_buffered,
                dropped - self._reported_dropped,
            )
            self._reported_dropped = dropped

    def put_back(self, records: list[DecisionRecord]) -> None:
        """Return records whose write failed to the front of the buffer (retried next time)."""
        self._buffer.extendleft(reversed(records))


class JsonLinesDecisionRecorder(BufferedDecisionRecorder):
    """Append decisions to a JSON Lines file, one :meth:`DecisionRecord.to_dict` a line.

    A daemon thread writes the buffer every ``flush_interval`` seconds (sooner when
    ``batch_size`` records are waiting); :meth:`flush` writes now and :meth:`close` (or
    leaving the ``with`` block) flushes and stops the thread.

    Args:
        path: The file; created if missing, appended to otherwise.
        flush_interval: Seconds between background writes.
        **options: Sampling, redaction, clock and buffer options of
            :class:`BufferedDecisionRecorder`.

    Raises:
        InvalidInputError: Bad options, or a ``flush_interval`` that is not positive.
        PersistenceError: The file cannot be opened.

    Example:
        >>> with JsonLinesDecisionRecorder("decisions.jsonl", redact=["card.number"]) as log:
        ...     engine = PolicyEngine(recorder=log)  # doctest: +SKIP
    """

    def __init__(self, path: str | Path, *, flush_interval: float = 1.0, **options: Any) -> None:
        super().__init__(**options)
        flush_interval = flush_seconds(flush_interval)
        self.path = Path(path)
        try:
            # Unbuffered: a failed write leaves nothing pending in a buffer to be written
            # twice with the retry (at worst a partial last line, which readers report).
            self._file: IO[bytes] = self.path.open("ab", buffering=0)
        except OSError as exc:
            raise PersistenceError(
                f"cannot open decision log {self.path}: {exc}",
                operation="decision_log",
                metadata={"path": str(self.path)},
            ) from exc
        self._interval = float(flush_interval)
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(
            target=self._run, name=f"decision-log:{self.path.name}", daemon=True
        )
        self._thread.start()

    def _batch_ready(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self._interval)
            self._wake.clear()
            if self._closed:
                return
            try:
                self.flush()
            except PersistenceError:
                # Nobody awaits this thread: say so loudly; the records stay buffered
                # and the next flush (or close) retries them and raises to its caller.
                logger.exception("decision log %s: background write failed", self.path)

    def flush(self) -> int:
        """Write every buffered record now; returns how many were written.

        Raises:
            PersistenceError: The write failed (the records stay buffered for a retry).
        """
        with self._write_lock:
            written = 0
            while self._buffer:
                records = self.take(self.batch_size)
                # ASCII JSON: a lone surrogate in an input cannot make a line unwritable.
                text = "".join(json.dumps(record.to_dict()) + "\n" for record in records)
                try:
                    self._write(text.encode("ascii"))
                except (OSError, ValueError) as exc:  # ValueError: the file was closed
                    self.put_back(records)
                    raise PersistenceError(
                        f"cannot write decision log {self.path}: {exc}",
                        operation="decision_log",
                        metadata={"path": str(self.path), "pending": self.pending},
                    ) from exc
                written += len(records)
            return written

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = self._file.write(view)
            if not written:
                raise OSError(f"no bytes written to {self.path}")
            view = view[written:]

    def close(self) -> None:
        """Flush, stop the background thread and close the file (idempotent).

        Raises:
            PersistenceError: The final write failed.
        """
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        self._thread.join()
        try:
            self.flush()
        finally:
            self._file.close()

    def __enter__(self) -> JsonLinesDecisionRecorder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
