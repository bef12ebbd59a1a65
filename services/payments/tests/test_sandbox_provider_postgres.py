"""The sandbox provider on a real database: idempotent by key, and independent of our transaction."""

import asyncio

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from emporium_kit.db import make_session_factory
from emporium_kit.migrations import folder, upgrade
from payments.adapters.provider import SandboxProvider

MIGRATIONS = folder("payments")


@pytest.fixture
async def sessions(databases):
    url = databases.create("payments")
    await asyncio.to_thread(upgrade, url, MIGRATIONS)
    engine = create_async_engine(url)
    yield make_session_factory(engine)
    await engine.dispose()


async def test_the_same_idempotency_key_returns_the_first_charge_even_when_raced(sessions):
    provider = SandboxProvider(lambda: sessions)
    results = await asyncio.gather(
        *(
            provider.charge(idempotency_key="charge:o-1", token="tok_visa", amount_cents=999, currency="USD")
            for _ in range(10)
        )
    )
    assert len({r.operation_id for r in results}) == 1 and all(r.approved for r in results)
    async with sessions() as s:
        assert (
            await s.execute(sa.text("SELECT count(*) FROM sandbox_provider_operations"))
        ).scalar_one() == 1


async def test_test_mode_tokens_decide_the_answer(sessions):
    provider = SandboxProvider(lambda: sessions)
    declined = await provider.charge(
        idempotency_key="k2", token="tok_chargeDeclined", amount_cents=1, currency="USD"
    )
    unknown = await provider.charge(
        idempotency_key="k3", token="tok_nonsense", amount_cents=1, currency="USD"
    )
    assert (declined.approved, declined.decline_code) == (False, "card_declined")
    assert (unknown.approved, unknown.decline_code) == (False, "invalid_token")


async def test_a_charge_stays_made_when_our_own_transaction_rolls_back(sessions):
    provider = SandboxProvider(lambda: sessions)
    async with sessions() as ours, ours.begin():
        first = await provider.charge(idempotency_key="k4", token="tok_visa", amount_cents=5, currency="USD")
        await ours.rollback()
    again = await provider.charge(idempotency_key="k4", token="tok_visa", amount_cents=5, currency="USD")
    assert again.operation_id == first.operation_id
