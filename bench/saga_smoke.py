"""The issue's acceptance script, against a running stack, plus POST → CONFIRMED latency.

    uv run python bench/saga_smoke.py [--gateway http://127.0.0.1:8000] [--orders 20]

Logs in as the admin, creates a product with stock 3, registers a customer and checks:
an order of 1 paid with tok_visa is CONFIRMED (available 2); one with tok_chargeDeclined is
CANCELLED / PAYMENT_DECLINED (available back to 2); an order of 5 is CANCELLED / OUT_OF_STOCK.
Then places ``--orders`` sequential orders and reports the time from POST to CONFIRMED.
Exits non-zero if any check fails.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid

import httpx


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gateway", default=os.environ.get("EMPORIUM_GATEWAY", "http://127.0.0.1:8000"))
    parser.add_argument("--admin-email", default=os.environ.get("ADMIN_EMAIL", "admin@emporium.local"))
    parser.add_argument(
        "--admin-password", default=os.environ.get("ADMIN_PASSWORD", "admin-password-change-me")
    )
    parser.add_argument("--orders", type=int, default=20)
    args = parser.parse_args()

    with httpx.Client(base_url=args.gateway, timeout=10) as http:

        def token(email: str, password: str) -> dict[str, str]:
            r = http.post("/api/v1/auth/login", json={"email": email, "password": password})
            r.raise_for_status()
            return {"Authorization": f"Bearer {r.json()['access_token']}"}

        admin = token(args.admin_email, args.admin_password)

        def product(stock: int) -> str:
            r = http.post(
                "/api/v1/products",
                headers=admin,
                json={
                    "sku": f"SMOKE-{uuid.uuid4().hex[:8]}",
                    "name": "Smoke test kettle",
                    "price_cents": 3499,
                    "currency": "USD",
                    "category": "smoke",
                },
            )
            r.raise_for_status()
            pid = r.json()["id"]
            http.put(f"/api/v1/inventory/{pid}", headers=admin, json={"on_hand": stock}).raise_for_status()
            return pid

        email = f"smoke-{uuid.uuid4().hex[:8]}@example.com"
        http.post(
            "/api/v1/auth/register", json={"email": email, "password": "smoke-password", "name": "Smoke"}
        ).raise_for_status()
        customer = token(email, "smoke-password")

        def order(pid: str, quantity: int, card: str) -> tuple[dict, float]:
            started = time.perf_counter()
            r = http.post(
                "/api/v1/orders",
                headers=customer,
                json={"items": [{"product_id": pid, "quantity": quantity}], "payment_token": card},
            )
            r.raise_for_status()
            order_id = r.json()["id"]
            while True:
                body = http.get(f"/api/v1/orders/{order_id}", headers=customer).json()
                if body["status"] in ("CONFIRMED", "CANCELLED"):
                    return body, time.perf_counter() - started
                if time.perf_counter() - started > 30:
                    raise SystemExit(f"order {order_id} still {body['status']} after 30 s")
                time.sleep(0.002)

        def available(pid: str) -> int:
            for _ in range(500):
                level = http.get(f"/api/v1/inventory/{pid}").json()
                if level["reserved"] == 0:
                    return level["available"]
                time.sleep(0.01)
            return level["available"]

        failures = []

        def check(what: str, ok: bool) -> None:
            print(f"{'ok  ' if ok else 'FAIL'} {what}")
            if not ok:
                failures.append(what)

        pid = product(3)
        first, _ = order(pid, 1, "tok_visa")
        check("order of 1 with tok_visa is CONFIRMED", first["status"] == "CONFIRMED")
        check("available is 2", available(pid) == 2)
        declined, _ = order(pid, 1, "tok_chargeDeclined")
        check(
            "tok_chargeDeclined is CANCELLED / PAYMENT_DECLINED",
            (declined["status"], declined["cancel_reason"]) == ("CANCELLED", "PAYMENT_DECLINED"),
        )
        check("available is back to 2", available(pid) == 2)
        too_many, _ = order(pid, 5, "tok_visa")
        check(
            "order of 5 is CANCELLED / OUT_OF_STOCK",
            (too_many["status"], too_many["cancel_reason"]) == ("CANCELLED", "OUT_OF_STOCK"),
        )

        if args.orders:
            pid = product(args.orders + 10)
            seconds = []
            for _ in range(args.orders):
                body, elapsed = order(pid, 1, "tok_visa")
                check_ok = body["status"] == "CONFIRMED"
                if not check_ok:
                    failures.append(f"latency order {body['id']} {body['status']}")
                seconds.append(elapsed)
            ms = sorted(s * 1000 for s in seconds)
            print(
                f"POST -> CONFIRMED over {len(ms)} sequential orders: median {statistics.median(ms):.1f} ms, "
                f"min {ms[0]:.1f} ms, max {ms[-1]:.1f} ms (client polls every 2 ms)"
            )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
