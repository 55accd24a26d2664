"""The table behind API keys: ``dotmac_api_keys``, the HTTP layer's own schema branch.

Created by migration ``h0001_api_keys`` (branch ``dotmac_http``). Its declarative base has a
metadata of its own, so the framework's and the ISP domain's models never include it.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Index, MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from dotmac_shared.business_logic.persistence._types import UTCDateTime, utcnow
from dotmac_shared.business_logic.persistence.models._base import NAMING_CONVENTION

__all__ = ["ApiKey", "HttpBase"]


class HttpBase(DeclarativeBase):
    """Declarative base of the HTTP layer's tables (branch ``dotmac_http``)."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class ApiKey(HttpBase):
    """One API key: its public id, its tenant and role, and the SHA-256 of its secret.

    The secret itself is never stored: a key is looked up by its id (the part of the token
    before the secret) and the secret's digest is compared in constant time.
    """

    __tablename__ = "dotmac_api_keys"

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    secret_sha256: Mapped[str] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (Index("ix_dotmac_api_keys_tenant", "tenant_id", "created_at"),)
