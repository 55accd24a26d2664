"""The README's FastAPI example runs as written, on both databases."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx

from dotmac_shared.business_logic.persistence import engine_of

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_example() -> str:
    section = README.read_text().split("## HTTP: Idempotency-Key", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, "the section has no python example"
    return match.group(1)


def test_readme_example_is_at_most_ten_lines_of_code_when_counted():
    code = [line for line in readme_example().splitlines() if line.strip()]
    # The imports aside (they are wrapped for the width of the page).
    assert len([line for line in code if not line.startswith(("from ", "    "))]) <= 10


def test_readme_fastapi_example_runs_once_and_replays_when_executed(database_url, monkeypatch):
    monkeypatch.setenv("DOTMAC_DATABASE_URL", database_url)
    namespace: dict = {}
    exec(compile(readme_example(), str(README), "exec"), namespace)  # migrates: outside a loop

    async def drive() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=namespace["app"])
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
                key = {"Idempotency-Key": '"refund-1"'}
                return [
                    await client.post("/refunds", json={"amount": "5.00"}, headers=key),
                    await client.post("/refunds", json={"amount": "5.00"}, headers=key),
                    await client.post("/refunds", json={"amount": "9.00"}, headers=key),
                    await client.post("/refunds", json={"amount": "5.00"}),
                ]
        finally:
            await engine_of(namespace["db"]).dispose()

    first, replay, other, unkeyed = asyncio.run(drive())
    assert first.status_code == 201
    assert first.json() == {"refund_id": "r-1", "amount": "5.00"}
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == first.json()
    assert other.status_code == 422
    assert other.headers["content-type"] == "application/problem+json"
    assert unkeyed.status_code == 400
    assert unkeyed.json()["code"] == "idempotency_key_missing"
