"""Named errors; the HTTP entrypoint maps each to a status once (see bootstrap.ERROR_STATUS)."""


class GatewayError(Exception):
    pass


class EmailAlreadyRegistered(GatewayError):
    def __init__(self, email: str) -> None:
        super().__init__(f"an account with e-mail {email!r} already exists")
        self.email = email


class InvalidCredentials(GatewayError):
    def __init__(self) -> None:
        super().__init__("e-mail or password is incorrect")


class InvalidToken(GatewayError):
    def __init__(self, reason: str) -> None:
        super().__init__(f"invalid access token: {reason}")
        self.reason = reason
