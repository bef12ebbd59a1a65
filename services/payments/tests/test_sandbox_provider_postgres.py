"""The sandbox provider on a real database: idempotent by key, and independent of our transaction."""

import asyncio

import sqlalchemy as sa

from payments.adapters.provider import Charge, Refund, SandboxProvider


async def charge(provider, key, token="tok_visa", cents=999):
    return (await provider.charge_many([Charge(key, token, cents, "USD")]))[key]


async def operations(sessions):
    async with sessions() as s:
        return (await s.execute(sa.text("SELECT count(*) FROM sandbox_provider_operations"))).scalar_one()


async def test_the_same_idempotency_key_returns_the_first_charge_even_when_raced(sessions):
    provider = SandboxProvider(lambda: sessions)
    results = await asyncio.gather(*(charge(provider, "charge:o-1") for _ in range(10)))
    assert len({r.operation_id for r in results}) == 1 and all(r.approved for r in results)
    assert await operations(sessions) == 1


async def test_batches_racing_on_the_same_keys_in_opposite_orders_get_the_same_answers(sessions):
    provider = SandboxProvider(lambda: sessions)
    keys = [f"charge:o-{n}" for n in range(20)]
    forward = [Charge(k, "tok_visa", 1, "USD") for k in keys]
    results = await asyncio.wait_for(
        asyncio.gather(*(provider.charge_many(forward if n % 2 else forward[::-1]) for n in range(6))),
        timeout=30,
    )
    assert all(r == results[0] for r in results) and sorted(results[0]) == sorted(keys)
    assert await operations(sessions) == 20


async def test_test_mode_tokens_decide_the_answer(sessions):
    provider = SandboxProvider(lambda: sessions)
    tokens = {"k1": "tok_visa", "k2": "tok_chargeDeclined", "k3": "tok_nonsense"}
    answers = await provider.charge_many([Charge(k, t, 1, "USD") for k, t in tokens.items()])
    assert answers["k1"].approved
    assert (answers["k2"].approved, answers["k2"].decline_code) == (False, "card_declined")
    assert (answers["k3"].approved, answers["k3"].decline_code) == (False, "invalid_token")


async def test_a_charge_stays_made_when_our_own_transaction_rolls_back(sessions):
    provider = SandboxProvider(lambda: sessions)
    async with sessions() as ours, ours.begin():
        first = await charge(provider, "k4", cents=5)
        await ours.rollback()
    again = await charge(provider, "k4", cents=5)
    assert again.operation_id == first.operation_id


async def test_a_batch_of_charges_is_one_round_trip_and_a_repeated_one_two(round_trips, sessions):
    provider = SandboxProvider(lambda: sessions)
    await charge(provider, "warm-up")
    batch = [Charge(f"k-{n}", "tok_visa", n, "USD") for n in range(20)]
    with round_trips() as first:
        made = await provider.charge_many(batch)
    with round_trips() as repeated:
        again = await provider.charge_many(batch)
    assert (first.total, repeated.total) == (1, 2)
    assert again == made


async def test_refunds_and_lookups_answer_by_key(sessions):
    provider = SandboxProvider(lambda: sessions)
    charged = await charge(provider, "charge:o-9", cents=700)
    refunded = await provider.refund_many([Refund("refund:o-9", charged.operation_id, 700, "USD")])
    assert refunded["refund:o-9"].approved and refunded["refund:o-9"].operation_id.startswith("re_")
    found = await provider.lookup_many(idempotency_keys=["charge:o-9", "charge:unknown"])
    assert list(found) == ["charge:o-9"] and found["charge:o-9"] == charged
