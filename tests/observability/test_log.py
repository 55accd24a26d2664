from __future__ import annotations

import json
import logging

from dotmac_shared.business_logic.observability import (
    JsonFormatter,
    correlation_scope,
    get_logger,
    log_context,
)


def test_records_carry_tenant_correlation_and_saga_ids_when_in_context(caplog):
    logger = get_logger("dotmac_test.context")
    with (
        caplog.at_level(logging.INFO, logger="dotmac_test.context"),
        correlation_scope("corr-9"),
        log_context(tenant_id="tenant123", saga_id="saga-1"),
    ):
        logger.info("hello")
    (record,) = caplog.records
    assert (record.tenant_id, record.correlation_id, record.saga_id) == (
        "tenant123",
        "corr-9",
        "saga-1",
    )


def test_context_is_restored_after_the_block(caplog):
    logger = get_logger("dotmac_test.restore")
    with caplog.at_level(logging.INFO, logger="dotmac_test.restore"):
        with log_context(tenant_id="a"):
            pass
        logger.info("outside")
    assert caplog.records[0].tenant_id is None


def test_json_formatter_writes_one_object_with_context_fields():
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "msg %s", ("a",), None)
    record.tenant_id, record.correlation_id, record.saga_id = "t", "c", None
    line = JsonFormatter().format(record)
    data = json.loads(line)
    assert data["message"] == "msg a" and data["level"] == "WARNING"
    assert data["tenant_id"] == "t" and data["saga_id"] is None
