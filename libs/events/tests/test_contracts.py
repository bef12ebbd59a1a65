from datetime import UTC, datetime
from uuid import uuid4

import pytest
from pydantic import ValidationError

from emporium_events.contracts import ALL_EVENTS, OrderLine, OrderPlaced, PaymentFailed
from emporium_events.envelope import Envelope, UndecodableMessage, decode
from emporium_events.topics import dlq, topic_for


def _order_placed() -> OrderPlaced:
    return OrderPlaced(
        order_id=uuid4(),
        customer_id=uuid4(),
        lines=(OrderLine(product_id=uuid4(), sku="A-1", quantity=2, unit_price_cents=150),),
        total_cents=300,
        currency="USD",
        payment_token="tok_visa",
        placed_at=datetime.now(UTC),
    )


def test_every_event_type_is_dotted_with_its_producing_service_and_unique():
    types = [(e.event_type, e.version) for e in ALL_EVENTS]
    assert len(types) == len(set(types))
    for event_type, _ in types:
        service, _, name = event_type.partition(".")
        assert service in {"catalog", "inventory", "orders", "payments"} and name[0].isupper()


def test_an_envelope_round_trips_through_bytes_and_parses_back_into_its_contract():
    event = _order_placed()
    envelope = Envelope.wrap(event, producer="orders", aggregate_id=str(event.order_id))
    again = decode(envelope.to_bytes())
    assert again == envelope
    assert again.event() == event


def test_consumers_ignore_fields_they_do_not_know():
    envelope = Envelope.wrap(
        PaymentFailed(order_id=uuid4(), reason="PAYMENT_DECLINED"), producer="p", aggregate_id="x"
    )
    grown = envelope.model_copy(update={"payload": {**envelope.payload, "added_later": 1}})
    assert grown.event() == envelope.event()


def test_an_unknown_event_type_or_version_parses_to_none_rather_than_failing():
    envelope = Envelope(
        event_type="orders.OrderPlaced", version=99, producer="o", aggregate_id="x", payload={}
    )
    assert envelope.event() is None


def test_a_known_event_with_an_invalid_payload_is_a_validation_error():
    envelope = Envelope(
        event_type="payments.PaymentFailed", version=1, producer="p", aggregate_id="x", payload={}
    )
    with pytest.raises(ValidationError):
        envelope.event()


@pytest.mark.parametrize("value", [None, b"", b"not json", b'{"event_type": "x"}'])
def test_bytes_that_are_not_an_envelope_are_undecodable(value):
    with pytest.raises(UndecodableMessage):
        decode(value)


def test_events_are_published_on_their_services_topic_and_dead_letters_beside_it():
    assert topic_for("orders.OrderPlaced") == "orders.events"
    assert dlq("orders.events") == "orders.events.dlq"


def test_quantities_must_be_positive():
    with pytest.raises(ValidationError):
        OrderLine(product_id=uuid4(), sku="A", quantity=0, unit_price_cents=1)
