"""The policy registry: every version of every policy, global and per tenant.

* ``get(name)`` gives the latest version by semantic-version precedence; ``version=``
  pins one.
* A tenant may register its own versions of a policy; ``get(name, tenant_id=...)``
  prefers the tenant's versions and falls back to the global ones.
* Registering the same version again with the same content is a no-op; with different
  content it is an error (a version is immutable once published).
* ``diff(name, v1, v2)`` is a unified diff of the two canonical YAML documents.
* Files are read with the document limits of :mod:`._document`: at most
  :data:`MAX_POLICY_FILE_BYTES`, no YAML aliases, nesting bounded while parsing, and a
  directory's symbolic links must stay inside the directory.

Reads take no lock (dictionary reads are atomic); writes are serialised and build new
entries before publishing them.
"""

from __future__ import annotations

import builtins
import difflib
import json
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

import yaml

from dotmac_shared.business_logic.exceptions import PolicyDefinitionError, PolicyNotFoundError
from dotmac_shared.business_logic.policies.core._checks import raise_for_errors
from dotmac_shared.business_logic.policies.core._compiler import Policy
from dotmac_shared.business_logic.policies.core._document import (
    MAX_DOCUMENT_DEPTH,
    PolicyDocument,
    semver_key,
)
from dotmac_shared.business_logic.policies.core._results import PolicyContext

__all__ = [
    "MAX_POLICY_FILE_BYTES",
    "POLICY_FILE_SUFFIXES",
    "PolicyRegistry",
    "load_policy_directory",
    "load_policy_file",
]

POLICY_FILE_SUFFIXES: Final = (".yaml", ".yml", ".json")
MAX_POLICY_FILE_BYTES: Final = 1_048_576

PolicySource = Policy | PolicyDocument | Mapping[str, Any]


class _NoAliasSafeLoader(yaml.SafeLoader):
    """SafeLoader without aliases and with bounded nesting.

    Without aliases a hostile file cannot expand into a "billion laughs"; the composer
    recurses once per nesting level, so a bound keeps a deeply nested file from exhausting
    the stack (the document walk reports anything deeper than the limit, naming the rule).
    """

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:  # noqa: D102
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None, None, "YAML aliases are not allowed in policy documents", event.start_mark
            )
        if self._depth > MAX_DOCUMENT_DEPTH:
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None,
                None,
                f"values are nested deeper than {MAX_DOCUMENT_DEPTH} levels",
                event.start_mark,
            )
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _file_error(path: Path, problem: str) -> PolicyDefinitionError:
    return PolicyDefinitionError(
        f"{path}: {problem}", location=str(path), metadata={"file": str(path)}
    )


def _read_document(path: Path, source: Path | None = None) -> Any:
    """Parse the file at ``source`` (default ``path``), naming ``path`` in errors."""
    try:
        # Read at most one byte past the limit: the file may grow after any size check.
        with (source or path).open("rb") as handle:
            data = handle.read(MAX_POLICY_FILE_BYTES + 1)
        if len(data) > MAX_POLICY_FILE_BYTES:
            raise _file_error(path, f"file is larger than {MAX_POLICY_FILE_BYTES} bytes")
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _file_error(path, f"cannot read policy file: {exc}") from exc
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except RecursionError as exc:  # the C parser recurses once per nesting level
            raise _file_error(
                path, f"invalid JSON: values are nested deeper than {MAX_DOCUMENT_DEPTH} levels"
            ) from exc
        except ValueError as exc:  # JSONDecodeError, or an integer too long to convert
            raise _file_error(path, f"invalid JSON: {exc}") from exc
    try:
        documents = list(yaml.load_all(text, Loader=_NoAliasSafeLoader))  # noqa: S506 (safe)
    except (yaml.YAMLError, ValueError) as exc:  # ValueError: a timestamp like 2026-13-45
        raise _file_error(path, f"invalid YAML: {exc}") from exc
    if len(documents) != 1:
        raise _file_error(path, f"a policy file holds one document, found {len(documents)}")
    return documents[0]


def load_policy_file(path: str | Path) -> Policy:
    """Read, validate and compile one policy file (``.yaml``, ``.yml`` or ``.json``).

    Args:
        path: The file; it holds exactly one policy document.

    Returns:
        The compiled policy (not registered anywhere).

    Raises:
        PolicyDefinitionError: The file cannot be read or parsed, or the document is invalid;
            the message starts with the file path.
    """
    return _load_file(Path(path))


def _load_file(file: Path, source: Path | None = None) -> Policy:
    raw = _read_document(file, source)
    try:
        return Policy.compile(raw)
    except PolicyDefinitionError as exc:
        raise PolicyDefinitionError(
            f"{file}: {exc.message}",
            policy_name=exc.policy_name,
            rule_name=exc.rule_name,
            location=exc.location,
            metadata={**exc.metadata, "file": str(file)},
        ) from exc


def load_policy_directory(path: str | Path) -> list[Policy]:
    """Load every policy file directly in ``path`` (sorted by file name).

    A symbolic link is followed only if it resolves inside the directory: a link planted
    in a policy folder cannot make the loader read files elsewhere.

    Raises:
        PolicyDefinitionError: ``path`` is not a directory, a policy file's link leads
            outside it, or any file is invalid.
    """
    directory = Path(path)
    if not directory.is_dir():
        raise _file_error(directory, "not a directory")
    root = directory.resolve()
    files: list[tuple[Path, Path]] = []
    for entry in sorted(directory.iterdir()):
        if entry.suffix.lower() not in POLICY_FILE_SUFFIXES:
            continue
        try:
            target = entry.resolve(strict=entry.is_symlink())
        except (OSError, RuntimeError) as exc:  # dangling link, or a loop (RuntimeError)
            raise _file_error(entry, f"cannot follow symbolic link: {exc}") from exc
        if not target.is_relative_to(root):
            raise _file_error(
                entry, f"symbolic link leads outside the policy directory {root} (to {target})"
            )
        if target.is_file():
            files.append((entry, target))
    # Read the resolved target that was checked, not the link, which could be swapped.
    return [_load_file(entry, target) for entry, target in files]


class PolicyRegistry:
    """Every registered version of every policy, global and per tenant.

    Example:
        >>> registry = PolicyRegistry()
        >>> _ = registry.register({
        ...     "name": "demo", "version": "1.0.0",
        ...     "rules": [{"name": "adult", "field": "age", "operator": "gte", "value": 18}],
        ... })
        >>> registry.versions("demo")
        ['1.0.0']
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # (tenant_id or None, name) -> {version: Policy}
        self._versions: dict[tuple[str | None, str], dict[str, Policy]] = {}
        # (tenant_id or None, name) -> latest Policy
        self._latest: dict[tuple[str | None, str], Policy] = {}
        # name -> latest global Policy, and the names some tenant overrides: the engine's
        # lock-free fast path (both are updated in place, never replaced).
        self.global_latest: dict[str, Policy] = {}
        self.overridden: set[str] = set()

    # --- writing ----------------------------------------------------------------------------

    def register(self, policy: PolicySource, *, tenant_id: str | None = None) -> Policy:
        """Register one policy version (compiling documents first).

        Args:
            policy: A compiled :class:`Policy`, a :class:`PolicyDocument` or a raw mapping.
            tenant_id: Register it as this tenant's own version; ``None`` = global.

        Returns:
            The registered policy (the existing one if this exact version was already there).

        Raises:
            PolicyDefinitionError: Invalid document, or this version exists with other content.
        """
        return self.register_many([policy], tenant_id=tenant_id)[0]

    def register_many(
        self, policies: Iterable[PolicySource], *, tenant_id: str | None = None
    ) -> builtins.list[Policy]:
        """Register several versions at once: all of them or, on any error, none.

        Raises:
            PolicyDefinitionError: Any invalid document or conflicting version, or a
                static check's error (see :func:`._checks.check_policy`), naming the rule.
        """
        compiled = [
            (item if isinstance(item, Policy) else Policy.compile(item)).for_tenant(tenant_id)
            for item in policies
        ]
        for policy in compiled:  # static checks: a document with an error is refused
            raise_for_errors(policy.findings)
        with self._lock:
            staged: dict[tuple[str | None, str], dict[str, Policy]] = {}
            registered: builtins.list[Policy] = []
            for policy in compiled:
                key = (tenant_id, policy.name)
                versions = staged.get(key)
                if versions is None:
                    versions = dict(self._versions.get(key, {}))
                    staged[key] = versions
                existing = versions.get(policy.version)
                if existing is not None:
                    if existing.content_hash != policy.content_hash:
                        raise PolicyDefinitionError(
                            f"policy {policy.name!r} version {policy.version} is already "
                            "registered with different content; publish a new version",
                            policy_name=policy.name,
                            location="version",
                            tenant_id=tenant_id,
                        )
                    registered.append(existing)
                    continue
                versions[policy.version] = policy
                registered.append(policy)
            # Publish only after every document passed (nothing half-registered).
            for key, versions in staged.items():
                latest = max(versions.values(), key=lambda item: semver_key(item.version))
                self._versions[key] = versions
                self._latest[key] = latest
                if key[0] is None:
                    self.global_latest[key[1]] = latest
                else:
                    self.overridden.add(key[1])
            return registered

    def load_directory(
        self, path: str | Path, *, tenant_id: str | None = None
    ) -> builtins.list[Policy]:
        """Load and register every policy file in ``path``; all or nothing.

        Raises:
            PolicyDefinitionError: Unreadable directory, invalid file or conflicting version.
        """
        return self.register_many(load_policy_directory(path), tenant_id=tenant_id)

    # --- reading ----------------------------------------------------------------------------

    def _not_found(
        self, name: str, version: str | None, tenant_id: str | None
    ) -> PolicyNotFoundError:
        if version is None:
            known = self.names()
            return PolicyNotFoundError(
                f"no policy named {name!r} is registered",
                policy_name=name,
                known=known,
                tenant_id=tenant_id,
            )
        known = sorted(
            set(self.versions(name)) | set(self.versions(name, tenant_id=tenant_id)),
            key=semver_key,
        )
        return PolicyNotFoundError(
            f"policy {name!r} has no version {version} (known: {', '.join(known) or 'none'})",
            policy_name=name,
            version=version,
            known=known,
            tenant_id=tenant_id,
        )

    def get(self, name: str, version: str | None = None, tenant_id: str | None = None) -> Policy:
        """Return a policy version.

        Args:
            name: The policy name.
            version: A pinned version; ``None`` = the latest.
            tenant_id: Prefer this tenant's own versions, falling back to the global ones.

        Raises:
            PolicyNotFoundError: No such policy or version.
        """
        if tenant_id is not None:
            if version is None:
                policy = self._latest.get((tenant_id, name))
            else:
                policy = self._versions.get((tenant_id, name), {}).get(version)
            if policy is not None:
                return policy
        if version is None:
            policy = self.global_latest.get(name)
        else:
            policy = self._versions.get((None, name), {}).get(version)
        if policy is None:
            raise self._not_found(name, version, tenant_id)
        return policy

    def resolve(
        self, name: str, version: str | None = None, context: PolicyContext | None = None
    ) -> Policy:
        """Return the policy version an evaluation with this context and version uses.

        The same answer as ``get(name, version, context.tenant_id)``; the latest global
        version of a policy no tenant overrides is found with one dict lookup.

        Args:
            name: The policy name.
            version: A pinned version; ``None`` = the latest.
            context: The evaluation context; its tenant's own versions are preferred.

        Raises:
            PolicyNotFoundError: No such policy or version.
        """
        if version is None and (context is None or name not in self.overridden):
            policy = self.global_latest.get(name)
            if policy is not None:
                return policy
        return self.get(name, version, context.tenant_id if context is not None else None)

    def versions(self, name: str, *, tenant_id: str | None = None) -> builtins.list[str]:
        """Versions of ``name`` (global, or the tenant's own), oldest first."""
        return sorted(self._versions.get((tenant_id, name), {}), key=semver_key)

    def names(self) -> builtins.list[str]:
        """Names of all registered policies (global and tenant), sorted."""
        return sorted({name for _, name in self._versions})

    def list(
        self, *, tenant_id: str | None = None, all_versions: bool = False
    ) -> builtins.list[Policy]:
        """Registered policies sorted by name, then version.

        Args:
            tenant_id: ``None`` lists global policies; a tenant id lists what that tenant
                sees (its own versions where it has them, else the global ones).
            all_versions: List every version instead of the latest of each policy.
        """
        result: builtins.list[Policy] = []
        for name in self.names():
            own = self._versions.get((tenant_id, name)) if tenant_id is not None else None
            versions = own or self._versions.get((None, name))
            if not versions:
                continue
            ordered = sorted(versions.values(), key=lambda item: semver_key(item.version))
            result.extend(ordered if all_versions else ordered[-1:])
        return result

    def diff(
        self, name: str, from_version: str, to_version: str, *, tenant_id: str | None = None
    ) -> str:
        """A unified diff between two versions' canonical YAML ("" when identical).

        Raises:
            PolicyNotFoundError: Either version is unknown.
        """
        old = self.get(name, from_version, tenant_id=tenant_id)
        new = self.get(name, to_version, tenant_id=tenant_id)
        return "".join(
            difflib.unified_diff(
                old.canonical_yaml().splitlines(keepends=True),
                new.canonical_yaml().splitlines(keepends=True),
                fromfile=old.label,
                tofile=new.label,
            )
        )

    def all_policies(self) -> builtins.list[Policy]:
        """Every registered version, global and tenant, sorted by name and version."""
        return sorted(
            (policy for versions in self._versions.values() for policy in versions.values()),
            key=lambda item: (item.name, item.tenant_id or "", semver_key(item.version)),
        )

    @property
    def has_tenant_overrides(self) -> bool:
        """Whether any tenant has its own version of any policy."""
        return bool(self.overridden)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and any(key[1] == name for key in self._versions)

    def __len__(self) -> int:
        return sum(len(versions) for versions in self._versions.values())
