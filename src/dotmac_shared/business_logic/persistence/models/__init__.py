"""SQLAlchemy models of the framework's own tables (migration branch ``dotmac_framework``).

Idempotency records, saga executions and their steps, and the policy decision log. Every
table is named ``dotmac_<name>``. The ISP domain's tables are in
:mod:`dotmac_shared.business_logic.operations.models`.
"""

from dotmac_shared.business_logic.persistence.models._base import Base
from dotmac_shared.business_logic.persistence.models._idempotency import IdempotencyRecord
from dotmac_shared.business_logic.persistence.models._policy_decisions import PolicyDecisionEntry
from dotmac_shared.business_logic.persistence.models._sagas import (
    SagaEventEntry,
    SagaExecution,
    SagaStepExecution,
)

__all__ = [
    "Base",
    "IdempotencyRecord",
    "PolicyDecisionEntry",
    "SagaEventEntry",
    "SagaExecution",
    "SagaStepExecution",
]
