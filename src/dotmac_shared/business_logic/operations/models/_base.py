"""The declarative base of the ISP domain's tables (migration branch ``dotmac_isp``)."""

from __future__ import annotations

from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

from dotmac_shared.business_logic.persistence.models._base import NAMING_CONVENTION

__all__ = ["DomainBase"]


class DomainBase(DeclarativeBase):
    """Declarative base of the ISP domain, with the framework's naming convention.

    Its metadata is apart from the framework's :class:`~dotmac_shared.business_logic.
    persistence.models.Base`: a database migrated for the framework only holds exactly
    ``Base.metadata``'s tables, one migrated in full holds both. No domain table refers to a
    framework table, so the two branches migrate independently.
    """

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
