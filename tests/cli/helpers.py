"""Constants and assertions shared by the command-line tests."""

from __future__ import annotations

SEEDED_CUSTOMERS = 12
DEAD_LEASE = 0.2
SERVICE_REQUEST = {
    "customer_id": "cust789",
    "service_type": "internet",
    "plan": "standard",
    "billing_period": "monthly",
}


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


def flat(text: str) -> str:
    """Output with runs of whitespace collapsed (Rich pads and may wrap)."""
    return " ".join(text.split())
