"""The envelope every event travels in (the Kafka record value, JSON)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from emporium_events.contracts import Event, contract_for


class Envelope(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    event_id: UUID = Field(default_factory=uuid4)
    event_type: str
    version: int
    occurred_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    producer: str
    aggregate_id: str
    correlation_id: str | None = None
    causation_id: str | None = None
    payload: dict[str, Any]

    @classmethod
    def wrap(
        cls,
        event: Event,
        *,
        producer: str,
        aggregate_id: str,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> Envelope:
        return cls(
            event_type=event.event_type,
            version=event.version,
            producer=producer,
            aggregate_id=aggregate_id,
            correlation_id=correlation_id,
            causation_id=causation_id,
            payload=event.model_dump(mode="json"),
        )

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    def event(self) -> Event | None:
        """The payload parsed into its contract; None when the type/version is unknown here.

        Raises ``pydantic.ValidationError`` when the type is known but the payload is not valid.
        """
        contract = contract_for(self.event_type, self.version)
        if contract is None:
            return None
        return contract.model_validate(self.payload)


class UndecodableMessage(ValueError):
    """A record whose value is not an envelope: it can never succeed and goes to the DLQ."""


def decode(value: bytes | None) -> Envelope:
    if value is None:
        raise UndecodableMessage("empty record value")
    try:
        return Envelope.model_validate_json(value)
    except ValidationError as exc:
        raise UndecodableMessage(f"not an event envelope: {exc.errors()[0]['msg']}") from exc
