PROBLEM = "application/problem+json"


async def register(gateway, email="ada@example.com", password="s3cret-pass", name="Ada", **extra):
    return await gateway.post(
        "/api/v1/auth/register", json={"email": email, "password": password, "name": name, **extra}
    )


async def test_a_new_customer_registers_logs_in_and_is_recognised(gateway) -> None:
    registered = await register(gateway, email="Ada@Example.com")
    assert registered.status_code == 201
    assert registered.json() | {"id": None} == {
        "id": None,
        "email": "ada@example.com",
        "name": "Ada",
        "role": "customer",
    }

    login = await gateway.post(
        "/api/v1/auth/login", json={"email": "ada@example.com", "password": "s3cret-pass"}
    )
    assert login.status_code == 200
    body = login.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 600

    me = await gateway.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.json() == {"id": registered.json()["id"], "email": "ada@example.com", "role": "customer"}


async def test_a_client_cannot_register_itself_as_an_admin(gateway) -> None:
    registered = await register(gateway, role="admin")

    assert registered.json()["role"] == "customer"


async def test_registering_a_taken_e_mail_is_a_409_problem(gateway) -> None:
    await register(gateway)

    again = await register(gateway, email="ADA@example.com")

    assert again.status_code == 409
    assert again.headers["content-type"] == PROBLEM
    assert "already exists" in again.json()["detail"]


async def test_a_malformed_e_mail_or_short_password_is_a_422_problem_naming_the_field(gateway) -> None:
    bad_email = await register(gateway, email="not-an-email")
    short_password = await register(gateway, password="short")

    assert bad_email.status_code == short_password.status_code == 422
    assert bad_email.headers["content-type"] == PROBLEM
    assert "email" in bad_email.json()["detail"]
    assert "password" in short_password.json()["detail"]


async def test_a_non_ascii_e_mail_is_refused_at_registration_not_failed_later(gateway) -> None:
    # The address travels to the services in an HTTP header, which is ASCII.
    response = await register(gateway, email="josé@example.com")

    assert response.status_code == 422
    assert "email" in response.json()["detail"]


async def test_a_body_that_is_not_json_is_a_422_problem(gateway) -> None:
    response = await gateway.post(
        "/api/v1/auth/register", content=b"{not json", headers={"content-type": "application/json"}
    )

    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM


async def test_a_wrong_password_is_a_401_problem_with_a_bearer_challenge(gateway) -> None:
    await register(gateway)

    wrong = await gateway.post(
        "/api/v1/auth/login", json={"email": "ada@example.com", "password": "nope-nope"}
    )
    unknown = await gateway.post(
        "/api/v1/auth/login", json={"email": "bob@example.com", "password": "s3cret-pass"}
    )

    for response in (wrong, unknown):
        assert response.status_code == 401
        assert response.headers["content-type"] == PROBLEM
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["detail"] == "e-mail or password is incorrect"


async def test_an_unreachable_user_database_is_a_503_with_retry_after(gateway, store) -> None:
    store.broken = True

    response = await register(gateway)

    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.headers["content-type"] == PROBLEM
