"""Every driver or network error leaves the saga store as a PersistenceError, cause chained."""

from __future__ import annotations

from pathlib import Path
from uuid import uuid4

import pytest

from dotmac_shared.business_logic import PersistenceError
from dotmac_shared.business_logic.persistence import create_engine
from dotmac_shared.business_logic.sagas import (
    ALL_TENANTS,
    SagaRecord,
    SagaStatus,
    SqlSagaStore,
    StepRecord,
)
from tests.support.services import free_port


def unreachable_url(backend: str, tmp_path: Path) -> str:
    if backend == "sqlite":  # the folder does not exist: sqlite3 cannot open the file
        return f"sqlite+aiosqlite:///{tmp_path / 'missing-folder' / 'saga.db'}"
    # Nothing listens there: ConnectionRefusedError, an OSError SQLAlchemy does not wrap.
    return f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/test"


def saga() -> SagaRecord:
    return SagaRecord(
        saga_id=str(uuid4()),
        saga_name="plain",
        saga_version="1",
        status=SagaStatus.RUNNING,
        initial_data={},
        context={},
    )


CALLS = {
    "create": lambda store, r: store.create(r, "w1", 30, [StepRecord(name="a", index=0)]),
    "save": lambda store, r: store.save(r, [StepRecord(name="a", index=0)], "w1"),
    "load": lambda store, r: store.load(r.saga_id, tenant_id=ALL_TENANTS),
    "acquire": lambda store, r: store.acquire(r.saga_id, "w1", 30),
    "renew": lambda store, r: store.renew(r.saga_id, "w1", 30),
    "reopen": lambda store, r: store.reopen(r.saga_id, "w1", 30, tenant_id=ALL_TENANTS),
    "request_cancel": lambda store, r: store.request_cancel(r.saga_id, tenant_id=ALL_TENANTS),
    "claim_expired": lambda store, r: store.claim_expired("w1", 30, 10),
    "list": lambda store, r: store.list(tenant_id=None, status=None, limit=10),
}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
@pytest.mark.parametrize("method", sorted(CALLS))
async def test_store_method_raises_persistence_error_when_the_database_is_unreachable(
    backend, method, tmp_path
):
    engine = create_engine(unreachable_url(backend, tmp_path))
    try:
        store = SqlSagaStore(engine)
        with pytest.raises(PersistenceError) as caught:
            await CALLS[method](store, saga())
    finally:
        await engine.dispose()
    assert caught.value.__cause__ is not None  # the driver's own error, chained
    assert caught.value.code == "persistence_error" and caught.value.operation
