"""A Hypothesis stateful test: whatever replies arrive, in whatever order and however often,
the order's state machine keeps its promises."""

from datetime import UTC, datetime, timedelta
from uuid import uuid4

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from orders.domain.model import (
    CancelReason,
    Line,
    Order,
    OrderAlreadyCancelled,
    OrderStatus,
    Outcome,
    SagaEnded,
)

START = datetime(2026, 1, 1, tzinfo=UTC)
TIMEOUT = timedelta(seconds=30)


class OrderSaga(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.order = Order.place(
            order_id=uuid4(),
            customer_id=uuid4(),
            customer_email=None,
            currency="USD",
            at=START,
            lines=[Line(product_id=uuid4(), sku="S", name="N", quantity=2, unit_price_cents=500)],
            saga_timeout=TIMEOUT,
            payment_token="tok_visa",
        )
        self.now = START
        self.confirmations = 0
        self.cancellations = 0
        self.ever_terminal: OrderStatus | None = None
        self.ends: list[SagaEnded] = []

    @rule(seconds=st.integers(min_value=0, max_value=20))
    def time_passes(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)

    @rule()
    def stock_reserved(self) -> None:
        self.order.stock_reserved(self.now)

    @rule()
    def payment_captured(self) -> None:
        outcome = self.order.payment_captured(self.now)
        self.confirmations += outcome is Outcome.CONFIRMED
        self.cancellations += outcome is Outcome.CANCELLED

    @rule(reason=st.sampled_from([CancelReason.OUT_OF_STOCK, CancelReason.PAYMENT_DECLINED]))
    def saga_failed(self, reason: CancelReason) -> None:
        self.cancellations += self.order.cancel(reason.value, self.now)

    @rule()
    def deadline_sweep(self) -> None:
        self.cancellations += self.order.expire(self.now)

    @rule()
    def customer_cancels(self) -> None:
        try:
            self.order.cancel_on_request(self.now)
            self.cancellations += 1
        except OrderAlreadyCancelled:
            assert self.order.status is OrderStatus.CANCELLED

    @invariant()
    def confirmed_at_most_once_and_only_before_the_deadline(self) -> None:
        assert self.confirmations <= 1
        confirmed = [h for h in self.order.history if h.status == "CONFIRMED"]
        assert len(confirmed) == self.confirmations
        assert all(h.at < self.order.deadline_at for h in confirmed)

    @invariant()
    def cancelled_at_most_once_and_cancelled_is_final(self) -> None:
        assert self.cancellations <= 1
        if self.ever_terminal is OrderStatus.CANCELLED:
            assert self.order.status is OrderStatus.CANCELLED
        if self.order.status.terminal:
            self.ever_terminal = self.order.status

    @invariant()
    def a_cancelled_order_always_says_why_and_a_live_one_never_does(self) -> None:
        if self.order.status is OrderStatus.CANCELLED:
            assert self.order.cancel_reason in {r.value for r in CancelReason}
        else:
            assert self.order.cancel_reason is None

    @invariant()
    def history_starts_pending_and_moves_forward_in_time(self) -> None:
        assert self.order.history[0].status == "PENDING"
        times = [h.at for h in self.order.history]
        assert times == sorted(times)

    @invariant()
    def the_saga_ends_once_with_its_first_terminal_status_timed_from_placing(self) -> None:
        if self.order.saga_ended is not None:  # taken after each commit, as the unit of work does
            self.ends.append(self.order.saga_ended)
            self.order.saga_ended = None
        terminal = [h for h in self.order.history if h.status in ("CONFIRMED", "CANCELLED")]
        assert len(self.ends) == min(len(terminal), 1)
        if self.ends:
            [end], first = self.ends, terminal[0]
            assert end.status.value == first.status and end.reason == first.note
            assert end.seconds == (first.at - START).total_seconds()

    @precondition(lambda self: self.order.status is OrderStatus.CONFIRMED)
    @rule()
    def a_confirmed_order_ignores_every_saga_reply(self) -> None:
        assert self.order.payment_captured(self.now) is Outcome.NOTHING
        assert not self.order.stock_reserved(self.now)
        assert not self.order.cancel(CancelReason.PAYMENT_DECLINED.value, self.now)
        assert not self.order.expire(self.now + TIMEOUT)
        assert self.order.status is OrderStatus.CONFIRMED


TestOrderSaga = OrderSaga.TestCase
TestOrderSaga.settings = settings(max_examples=200, stateful_step_count=30, deadline=None)
