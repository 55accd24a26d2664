"""SQLAlchemy models of every table the framework owns."""

from dotmac_shared.business_logic.persistence.models.base import Base
from dotmac_shared.business_logic.persistence.models.commissions import CommissionConfiguration
from dotmac_shared.business_logic.persistence.models.idempotency import IdempotencyRecord
from dotmac_shared.business_logic.persistence.models.sagas import SagaExecution, SagaStepExecution

__all__ = [
    "Base",
    "CommissionConfiguration",
    "IdempotencyRecord",
    "SagaExecution",
    "SagaStepExecution",
]
