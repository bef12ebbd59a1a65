from __future__ import annotations

from typing import Self

from emporium_events.unit_of_work import UnitOfWork
from payments.adapters.repository import PaymentRepository


class PaymentsUnitOfWork(UnitOfWork):
    payments: PaymentRepository

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        self.payments = PaymentRepository(self.db)  # both its statements run per batch, on psycopg
        return self
