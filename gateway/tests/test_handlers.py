import uuid

import pytest

from gateway.domain.commands import LogIn, RegisterUser, SeedAdmin
from gateway.domain.errors import EmailAlreadyRegistered, InvalidCredentials
from gateway.domain.model import Role
from gateway.service_layer.messagebus import MessageBus


@pytest.fixture
def bus(store, hasher, tokens) -> MessageBus:
    return MessageBus(store=store, hasher=hasher, tokens=tokens)


async def test_registering_stores_a_lower_cased_customer_with_a_hashed_password(bus, store) -> None:
    user = await bus.handle(
        RegisterUser(user_id=uuid.uuid4(), email=" Ada@Example.COM ", password="s3cret-pass", name="Ada")
    )

    assert user.email == "ada@example.com" and user.role is Role.CUSTOMER
    assert store.rows["ada@example.com"].password_hash.startswith("$argon2id$")


async def test_registering_an_e_mail_twice_in_any_case_is_refused(bus) -> None:
    await bus.handle(
        RegisterUser(user_id=uuid.uuid4(), email="ada@example.com", password="s3cret-pass", name="Ada")
    )

    with pytest.raises(EmailAlreadyRegistered):
        await bus.handle(
            RegisterUser(user_id=uuid.uuid4(), email="ADA@example.com", password="other-pass", name="A")
        )


async def test_logging_in_with_a_wrong_password_or_unknown_e_mail_is_the_same_error(bus) -> None:
    await bus.handle(
        RegisterUser(user_id=uuid.uuid4(), email="ada@example.com", password="s3cret-pass", name="Ada")
    )

    with pytest.raises(InvalidCredentials):
        await bus.handle(LogIn(email="ada@example.com", password="wrong-pass"))
    with pytest.raises(InvalidCredentials):
        await bus.handle(LogIn(email="nobody@example.com", password="s3cret-pass"))


async def test_seeding_the_admin_twice_leaves_one_admin_with_the_configured_password(
    bus, store, tokens
) -> None:
    first = await bus.handle(
        SeedAdmin(user_id=uuid.uuid4(), email="admin@emporium.local", password="admin-pass-1", name="Admin")
    )
    again = await bus.handle(
        SeedAdmin(user_id=uuid.uuid4(), email="admin@emporium.local", password="admin-pass-2", name="Admin")
    )

    assert again.id == first.id and len(store.rows) == 1
    token = await bus.handle(LogIn(email="admin@emporium.local", password="admin-pass-2"))
    assert tokens.decode(token.access_token).role is Role.ADMIN


async def test_seeding_the_admin_promotes_an_existing_customer_with_that_e_mail(bus, store) -> None:
    await bus.handle(
        RegisterUser(user_id=uuid.uuid4(), email="boss@example.com", password="s3cret-pass", name="B")
    )

    await bus.handle(
        SeedAdmin(user_id=uuid.uuid4(), email="Boss@example.com", password="s3cret-pass", name="Boss")
    )

    assert store.rows["boss@example.com"].role is Role.ADMIN
