"""The declarative base of the framework's own tables (migration branch ``dotmac_framework``)."""

from __future__ import annotations

from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

__all__ = ["NAMING_CONVENTION", "TABLE_PREFIX", "Base"]

#: Every table of the package, framework and ISP domain alike, is named ``dotmac_<name>`` so
#: that it cannot collide with a host application's own tables in the same database.
TABLE_PREFIX = "dotmac_"

#: Deterministic constraint names keep Alembic migrations identical on both databases; they
#: embed the (prefixed) table name, so constraints are namespaced as the tables are.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of the framework's tables, with the package's naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
