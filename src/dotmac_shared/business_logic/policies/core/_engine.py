"""The policy engine: register, evaluate, decide fast, enforce.

``evaluate`` returns a full explanation and never raises for the data's content;
``is_allowed`` answers ALLOW or not without building one; ``enforce`` is the only call
that raises :class:`PolicyViolationError`.

Observability: each ``evaluate`` records ``dotmac.policy.evaluation.duration`` (ms, with
``policy`` and ``decision`` attributes). There is deliberately no span per evaluation:
measured with the OpenTelemetry API, even a no-op span costs 0.5-5 µs, several times the
evaluation itself; callers trace the operation that asks for the decision instead.

Hot reload: :meth:`PolicyEngine.reload_directory` validates a whole folder into a new
registry and then replaces ``engine.registry``, the one reference every evaluation reads
(once per call), so each evaluation sees the old set or the new one, never a mix. A decision
that evaluates several policies takes :meth:`PolicyEngine.snapshot` first and evaluates them
all on it. :meth:`PolicyEngine.watch` polls a folder and reloads it when it changes.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from dotmac_shared.business_logic.exceptions import PolicyDefinitionError, PolicyViolationError
from dotmac_shared.business_logic.policies.core._compiler import Policy, _coerce_context
from dotmac_shared.business_logic.policies.core._decision_log import DecisionRecorder
from dotmac_shared.business_logic.policies.core._document import PolicyDocument
from dotmac_shared.business_logic.policies.core._impact import (
    ImpactReport,
    InputProblem,
    ReplayInput,
    analyze_impact,
)
from dotmac_shared.business_logic.policies.core._registry import (
    POLICY_FILE_SUFFIXES,
    PolicyRegistry,
    load_policy_directory,
)
from dotmac_shared.business_logic.policies.core._results import (
    PolicyContext,
    PolicyDecision,
    PolicyResult,
)

__all__ = ["PolicyEngine"]

logger = logging.getLogger(__name__)

_ALLOW = PolicyDecision.ALLOW


class PolicyEngine:
    """Evaluate registered policies.

    Args:
        registry: Where policies live; a new empty :class:`PolicyRegistry` by default.
        recorder: Where decisions are recorded (the decision log), e.g. a
            :class:`~dotmac_shared.business_logic.policies.core._decision_log.JsonLinesDecisionRecorder`;
            ``None`` (the default) records nothing at no cost. Settable later as ``recorder``.

    Example:
        >>> engine = PolicyEngine()
        >>> _ = engine.register_policy({
        ...     "name": "demo", "version": "1.0.0",
        ...     "rules": [{"name": "adult", "field": "age", "operator": "gte", "value": 18}],
        ... })
        >>> engine.evaluate("demo", {"age": 17}).decision
        <PolicyDecision.DENY: 'DENY'>
        >>> engine.is_allowed("demo", {"age": 30})
        True
    """

    def __init__(
        self, registry: PolicyRegistry | None = None, *, recorder: DecisionRecorder | None = None
    ) -> None:
        # The one reference to the policy set in force: a reload replaces it whole, and each
        # evaluation reads it once, so no evaluation sees part of one set and part of another.
        self.registry = registry if registry is not None else PolicyRegistry()
        self.recorder = recorder
        # Serialises writers: a registration racing a reload would land in the replaced set.
        self._write_lock = threading.RLock()

    def register_policy(
        self,
        document: Mapping[str, Any] | PolicyDocument | Policy,
        *,
        tenant_id: str | None = None,
    ) -> Policy:
        """Validate, compile and register one policy version.

        Args:
            document: A raw document (dict from YAML/JSON), a :class:`PolicyDocument` or a
                compiled :class:`Policy`.
            tenant_id: Register it as this tenant's own version of the policy.

        Returns:
            The compiled, registered policy.

        Raises:
            PolicyDefinitionError: Invalid document, or the version exists with other content.
        """
        with self._write_lock:
            return self.registry.register(document, tenant_id=tenant_id)

    def load_directory(self, path: str | Path, *, tenant_id: str | None = None) -> list[Policy]:
        """Register every ``*.yaml``, ``*.yml`` and ``*.json`` policy in ``path``; all or none.

        Raises:
            PolicyDefinitionError: A file is unreadable or invalid (names the file).
        """
        with self._write_lock:
            return self.registry.load_directory(path, tenant_id=tenant_id)

    def get_policy(
        self,
        policy_name: str,
        context: PolicyContext | None = None,
        *,
        version: str | None = None,
    ) -> Policy:
        """The policy version an evaluation with this context and version would use.

        Raises:
            PolicyNotFoundError: Unknown policy or version.
        """
        return self.registry.resolve(policy_name, version, context)

    def evaluate(
        self,
        policy_name: str,
        data: Mapping[str, Any],
        context: PolicyContext | None = None,
        *,
        version: str | None = None,
    ) -> PolicyResult:
        """Evaluate a policy with full explanation.

        Args:
            policy_name: The policy to evaluate.
            data: The input, e.g. a customer record.
            context: Tenant (selects tenant overrides), user, operation, attributes, now.
            version: Pin a version; the latest by default.

        Returns:
            The decision, score, every rule's outcome and timing. Missing or wrong-typed
            fields are failed rules, not exceptions.

        Raises:
            PolicyNotFoundError: Unknown policy or version.
            InvalidInputError: ``data`` is not a mapping or ``context`` is not a context.
        """
        registry = self.registry  # once: a reload may replace it meanwhile
        # registry.resolve()'s fast path, inlined: this runs on every evaluation.
        policy = None
        if version is None and (context is None or policy_name not in registry.overridden):
            policy = registry.global_latest.get(policy_name)
        if policy is None:
            if context is not None and type(context) is not PolicyContext:
                context = _coerce_context(context)
            policy = registry.resolve(policy_name, version, context)
        result = policy.run_evaluate(data, context)  # records the duration metric
        recorder = self.recorder  # read once: another thread may unset it meanwhile
        if recorder is not None:
            recorder.record(result, data)
        return result

    def is_allowed(
        self,
        policy_name: str,
        data: Mapping[str, Any],
        context: PolicyContext | None = None,
        *,
        version: str | None = None,
    ) -> bool:
        """Whether the policy's decision is ALLOW; the fast path without an explanation.

        Raises:
            PolicyNotFoundError: Unknown policy or version.
            InvalidInputError: ``data`` is not a mapping or ``context`` is not a context.
        """
        registry = self.registry  # once: a reload may replace it meanwhile
        # registry.resolve()'s fast path, inlined: this runs on every check.
        if version is None and (context is None or policy_name not in registry.overridden):
            policy = registry.global_latest.get(policy_name)
            if policy is not None:
                if self.recorder is None:
                    return policy.check(data, context)
                return self._recorded_check(policy, data, context)
        if context is not None and type(context) is not PolicyContext:
            context = _coerce_context(context)
        policy = registry.resolve(policy_name, version, context)
        if self.recorder is None:
            return policy.check(data, context)
        return self._recorded_check(policy, data, context)

    def _recorded_check(
        self, policy: Policy, data: Mapping[str, Any], context: PolicyContext | None
    ) -> bool:
        # A record names the failed rules, which the short-circuit check does not know.
        result = policy.run_evaluate(data, context)
        recorder = self.recorder
        if recorder is not None:
            recorder.record(result, data)
        return result.decision is _ALLOW

    def evaluate_many(
        self,
        policy_name: str,
        items: Iterable[Mapping[str, Any]],
        context: PolicyContext | None = None,
        *,
        version: str | None = None,
    ) -> list[PolicyResult]:
        """Evaluate one policy version for many inputs (resolved once).

        Raises:
            PolicyNotFoundError: Unknown policy or version.
            InvalidInputError: An item is not a mapping.
        """
        if context is not None and type(context) is not PolicyContext:
            context = _coerce_context(context)
        evaluate = self.get_policy(policy_name, context, version=version).run_evaluate
        recorder = self.recorder
        if recorder is None:
            return [evaluate(item, context) for item in items]
        results = []
        for item in items:
            result = evaluate(item, context)
            recorder.record(result, item)
            results.append(result)
        return results

    def enforce(
        self,
        policy_name: str,
        data: Mapping[str, Any],
        context: PolicyContext | None = None,
        *,
        version: str | None = None,
    ) -> PolicyResult:
        """Evaluate and raise unless the decision is ALLOW.

        Returns:
            The (allowing) result.

        Raises:
            PolicyViolationError: The decision is DENY or REQUIRE_APPROVAL; carries the
                failed rules and the decision.
            PolicyNotFoundError: Unknown policy or version.
            InvalidInputError: ``data`` is not a mapping or ``context`` is not a context.
        """
        if context is not None and type(context) is not PolicyContext:
            context = _coerce_context(context)
        result = self.evaluate(policy_name, data, context, version=version)
        if result.decision is _ALLOW:
            return result
        reasons = "; ".join(result.reasons) or "no reason given"
        logger.info(
            "policy %s@%s decided %s: %s",
            result.policy_name,
            result.policy_version,
            result.decision.value,
            reasons,
            extra={"tenant_id": result.tenant_id},
        )
        raise PolicyViolationError(
            f"{result.policy_name}@{result.policy_version} decided "
            f"{result.decision.value}: {reasons}",
            policy_name=result.policy_name,
            policy_version=result.policy_version,
            failed_rules=[rule.to_dict() for rule in result.failed_rules],
            decision=result.decision.value,
            operation=context.operation if context is not None else None,
            tenant_id=context.tenant_id if context is not None else None,
            user_id=context.user_id if context is not None else None,
            correlation_id=context.correlation_id if context is not None else None,
            metadata={
                "reasons": list(result.reasons),
                "content_hash": result.content_hash,
                "in_effect": result.in_effect,
                "score": result.score,
            },
        )

    def impact(
        self,
        policy_name: str,
        from_version: str,
        to_version: str,
        inputs: Iterable[Mapping[str, Any] | ReplayInput | InputProblem | None],
        *,
        tenant_id: str | None = None,
        sample_limit: int = 5,
    ) -> ImpactReport:
        """Replay inputs through two versions and report which decisions flip, and why.

        Args:
            policy_name: The policy.
            from_version: The version in force.
            to_version: The candidate version.
            inputs: Input mappings, or :func:`~._impact.parse_input_lines` output (JSON
                Lines of inputs or of decision-log records).
            tenant_id: Compare this tenant's versions (falling back to the global ones).
            sample_limit: Flipped inputs kept per direction.

        Returns:
            Totals, flips by direction and by responsible rule, samples, bad lines.

        Raises:
            PolicyNotFoundError: Unknown policy or version.

        Example:
            >>> report = engine.impact("demo", "1.0.0", "1.1.0", [{"age": 18}])  # doctest: +SKIP
            >>> report.to_dict()["flipped"]  # doctest: +SKIP
            1
        """
        old = self.registry.get(policy_name, from_version, tenant_id)
        new = self.registry.get(policy_name, to_version, tenant_id)
        return analyze_impact(old, new, inputs, sample_limit=sample_limit)

    # --- hot reload ---------------------------------------------------------------------------

    def snapshot(self) -> PolicyEngine:
        """An engine over the policy set in force now, which later reloads do not change.

        A decision that evaluates several policies evaluates them all on one snapshot, so
        that a reload between two evaluations cannot give it one policy from the old set and
        another from the new. Use the snapshot to evaluate, not to register or reload.

        Example:
            >>> engine = PolicyEngine()
            >>> view = engine.snapshot()
            >>> view.registry is engine.registry
            True
        """
        return copy.copy(self)  # shares the registry read once here, and any other settings

    def reload_directory(self, path: str | Path, *, tenant_id: str | None = None) -> list[Policy]:
        """Replace the policy set with a folder's, validating every file before the swap.

        The folder's documents become the whole set of one scope: the global policies, or
        ``tenant_id``'s own versions. Policies of the other scopes (every tenant's overrides
        on a global reload) are carried over unchanged. Policies registered earlier in the
        reloaded scope but absent from the folder are gone afterwards, versions pinned by
        callers included. The new set is built in a new :class:`PolicyRegistry` and
        published by replacing :attr:`registry`: evaluations running meanwhile finish on the
        old set, later ones use the new, none sees both. On any error nothing changes.

        Code that kept ``engine.registry`` itself (rather than the engine) keeps reading the
        old set; domain engines (:class:`PlanEligibilityEngine` and the others) hold the
        engine and see the new set, but register their shipped policies only when created,
        so a folder they rely on must contain them. A file may change a version's content in
        place (the folder is the source of truth); this is logged, and results still carry
        each version's ``content_hash``.

        Args:
            path: The folder of ``*.yaml``, ``*.yml`` and ``*.json`` policy files.
            tenant_id: Reload this tenant's own versions instead of the global policies.

        Returns:
            The policies loaded from the folder, now in force.

        Raises:
            PolicyDefinitionError: A file is unreadable or invalid (the message starts with
                the file), or two files give one version different content; the previous set
                stays in force.
        """
        policies = load_policy_directory(path)  # every file validated before anything changes
        with self._write_lock:
            current = self.registry
            fresh = PolicyRegistry()
            carried: dict[str | None, list[Policy]] = {}
            for policy in current.all_policies():
                if policy.tenant_id != tenant_id:
                    carried.setdefault(policy.tenant_id, []).append(policy)
            for owner, kept in carried.items():
                fresh.register_many(kept, tenant_id=owner)
            loaded = fresh.register_many(policies, tenant_id=tenant_id)
            for policy in loaded:
                if policy.version in current.versions(policy.name, tenant_id=tenant_id):
                    before = current.get(policy.name, policy.version, tenant_id)
                    if before.tenant_id == tenant_id and before.content_hash != policy.content_hash:
                        logger.warning(
                            "policy %s changed content without a new version on reload from %s",
                            policy.label,
                            path,
                            extra={"tenant_id": tenant_id},
                        )
            self.registry = fresh  # the swap: one reference, read once per evaluation
        logger.info(
            "reloaded %d policies from %s", len(loaded), path, extra={"tenant_id": tenant_id}
        )
        return loaded

    async def watch(
        self,
        path: str | Path,
        *,
        interval: float = 2.0,
        tenant_id: str | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        """Load ``path``, then reload it whenever its policy files change, until cancelled.

        It notes each policy file's name, size, modification time and inode, loads the
        folder (so no change made before the watch started is missed), and every
        ``interval`` seconds reloads it if anything noted differs. Reloads run
        :meth:`reload_directory` in a worker thread (compiling does not block the event
        loop). A failed load is logged with the file and the reason and the previous set
        stays in force; the next change is tried again. To fail fast on a bad folder at
        start-up, call :meth:`reload_directory` yourself before watching.

        Args:
            path: The folder to watch.
            interval: Seconds between polls.
            tenant_id: Reload this tenant's own versions instead of the global policies.
            sleep: The monotonic sleep to wait with (injected by tests).
        """
        directory = Path(path)
        seen: Fingerprint | None = None
        while True:
            # Noted before loading: a change made while loading shows at the next poll.
            current = _fingerprint(directory)
            if current == seen:
                await sleep(interval)
                continue
            seen = current
            try:
                await asyncio.to_thread(self.reload_directory, directory, tenant_id=tenant_id)
            except PolicyDefinitionError as exc:
                logger.error(
                    "policy reload from %s failed; the previous policies stay in force: %s",
                    directory,
                    exc.message,
                    extra={"tenant_id": tenant_id, "error": exc.to_dict()},
                )


Fingerprint = tuple[tuple[str, int, int, int], ...] | str


def _fingerprint(directory: Path) -> Fingerprint:
    """What the watcher compares between polls (an error text if the folder is unreadable)."""
    try:
        entries = []
        with os.scandir(directory) as found:
            for entry in found:
                if os.path.splitext(entry.name)[1].lower() in POLICY_FILE_SUFFIXES:
                    stat = entry.stat()  # follows links: the target's changes count
                    entries.append((entry.name, stat.st_size, stat.st_mtime_ns, stat.st_ino))
    except OSError as exc:  # reload_directory reports it, naming the folder
        return f"unreadable: {exc}"
    return tuple(sorted(entries))
