"""The benchmark's own arithmetic: latency from scheduled starts, vegeta's targets and results,
and the median of three. Pure functions, no stack (``make test`` runs these in well under a second).
"""

from __future__ import annotations

import base64
import json
import random
import sys
from pathlib import Path

import pytest

# The bench scripts import each other by name (they run as scripts); append, not insert, so the
# folder's profile.py never shadows the standard library's profile module for other tests.
sys.path.append(str(Path(__file__).parent))
import loadgen
import vegeta


def _result(
    seq: int, started: float, latency: float = 0.005, status: int = 202, body: bytes = b""
) -> vegeta.Result:
    return vegeta.Result(
        seq=seq,
        started=started,
        latency=latency,
        status=status,
        method="POST",
        url="http://127.0.0.1:8000/api/v1/orders",
        body=body,
        error="",
    )


def test_a_request_sent_late_counts_its_wait_from_its_scheduled_start() -> None:
    # 100/s from t=1000: slots at 1000.00, 1000.01, 1000.02; the third is sent 50 ms late.
    results = [_result(0, 1000.000), _result(1, 1000.011), _result(2, 1000.070, latency=0.010)]

    scheduled = vegeta.from_schedule(results, rate=100)

    assert [round(s.scheduled, 3) for s in scheduled] == [1000.0, 1000.01, 1000.02]
    assert scheduled[2].latency == pytest.approx(0.060)  # 50 ms late + 10 ms answering
    assert [s.late for s in scheduled] == [False, False, True]


def test_the_schedule_starts_at_the_earliest_on_time_request_whatever_the_result_order() -> None:
    results = [_result(3, 10.3002), _result(0, 10.0005), _result(2, 10.2001), _result(1, 10.1)]

    scheduled = vegeta.from_schedule(results, rate=10)

    assert [s.result.seq for s in scheduled] == [0, 1, 2, 3]
    assert scheduled[0].scheduled == pytest.approx(10.0)


def test_an_order_target_carries_its_own_token_idempotency_key_and_body() -> None:
    customers = [
        loadgen.Customer(token=f"t{n}", user_id=f"u{n}", email="e", role="customer") for n in range(3)
    ]
    shop = loadgen.Shop("http://gw", customers[0], customers, ["p1", "p2"], ["w"])
    rng = random.Random(1)

    lines = [json.loads(line) for line in vegeta.target_lines(shop.checkout_targets(50, rng)).splitlines()]

    assert len(lines) == 50
    assert {line["method"] for line in lines} == {"POST"}
    assert {line["url"] for line in lines} == {"http://gw/api/v1/orders"}
    keys = [line["header"]["Idempotency-Key"][0] for line in lines]
    assert len(set(keys)) == 50
    assert {line["header"]["Authorization"][0] for line in lines} == {"Bearer t0", "Bearer t1", "Bearer t2"}
    body = json.loads(base64.b64decode(lines[0]["body"]))
    assert body["items"][0]["product_id"] in ("p1", "p2") and body["payment_token"] == "tok_visa"


def test_vegeta_csv_rows_become_results_and_the_end_of_targets_row_is_dropped() -> None:
    body = base64.b64encode(b'{"id": "abc", "status": "PENDING"}').decode()
    text = (
        f"1796177496581349774,202,4000000,80,35,,{body},,0,POST,http://gw/api/v1/orders,\n"
        "1796177496881464335,0,64987,0,0,no targets to attack,,,1,,,\n"
    )

    [result] = vegeta.parse_csv(text)

    assert result.seq == 0 and result.status == 202
    assert result.latency == pytest.approx(0.004)
    assert loadgen.order_id_of(result.status, result.body) == "abc"


def test_a_request_is_told_apart_by_its_method_and_url() -> None:
    assert loadgen.kind_of("POST", "http://gw/api/v1/orders") == "order"
    assert loadgen.kind_of("GET", "http://gw/api/v1/products?page=2&page_size=20") == "list"
    assert loadgen.kind_of("GET", "http://gw/api/v1/products?q=kettle") == "search"
    assert loadgen.kind_of("GET", "http://gw/api/v1/products/0b6e") == "product"


def test_a_headline_figure_is_the_median_of_its_runs_with_min_and_max() -> None:
    assert loadgen.spread([52.0, 48.5, 61.0]) == {"min": 48.5, "median": 52.0, "max": 61.0, "runs": 3}
    assert loadgen.spread([None, 3.0, 5.0])["median"] == 4.0
    assert loadgen.spread([])["median"] is None


def test_a_fractional_rate_is_written_as_whole_requests_per_period() -> None:
    assert vegeta.rate_flag(35.4) == "3540/100s"
    assert vegeta.rate_flag(400) == "40000/100s"


def test_the_customer_identity_comes_from_the_token_claims() -> None:
    claims = {"sub": "9d2f", "email": "a@example.com", "role": "customer"}
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")

    customer = loadgen.Customer.from_token(f"h.{payload}.s")

    assert customer.identity == {
        "X-User-Id": "9d2f",
        "X-User-Email": "a@example.com",
        "X-User-Role": "customer",
    }
    assert customer.bearer == {"Authorization": f"Bearer h.{payload}.s"}


def test_the_cpu_of_a_child_that_exited_stays_counted_with_its_parent() -> None:
    import os
    import subprocess

    import run

    before = run._cpu_seconds(os.getpid(), reaped=True)
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass",
        ],
        check=True,
    )
    assert run._cpu_seconds(os.getpid(), reaped=True) - before >= 0.25
