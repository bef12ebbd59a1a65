"""Demo catalog: a dozen products in three categories, each with stock, created through the gateway.

Idempotent: a product whose SKU exists already (409) is looked up and reused, and its stock is
set again to the same level.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

# (sku, name, description, price_cents, category, on_hand)
DEMO_PRODUCTS: tuple[tuple[str, str, str, int, str, int], ...] = (
    ("BOOK-001", "The Pragmatic Programmer", "20th anniversary edition, hardcover.", 4299, "books", 40),
    (
        "BOOK-002",
        "Designing Data-Intensive Applications",
        "Reliable, scalable, maintainable systems.",
        5499,
        "books",
        60,
    ),
    ("BOOK-003", "Domain-Driven Design", "Tackling complexity in the heart of software.", 6199, "books", 25),
    ("BOOK-004", "Release It!", "Design and deploy production-ready software.", 3999, "books", 35),
    ("ELEC-001", "Mechanical Keyboard", "87 keys, hot-swappable brown switches.", 12900, "electronics", 50),
    ("ELEC-002", "USB-C Hub", "7-in-1: HDMI, 3x USB-A, SD, microSD, 100 W PD.", 3900, "electronics", 100),
    ("ELEC-003", "Noise-Cancelling Headphones", "Over-ear, 30 h battery.", 24900, "electronics", 30),
    ("ELEC-004", '27" 4K Monitor', "IPS panel, USB-C with 65 W charging.", 39900, "electronics", 25),
    ("HOME-001", "Pour-Over Coffee Set", "Glass dripper, carafe and 100 filters.", 4500, "home", 80),
    ("HOME-002", "Cast Iron Skillet", "Pre-seasoned, 26 cm.", 3450, "home", 45),
    ("HOME-003", "Desk Lamp", "Dimmable LED, adjustable arm.", 5900, "home", 70),
    ("HOME-004", "Wool Throw Blanket", "130 x 170 cm, merino wool.", 8900, "home", 55),
)

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class DemoError(RuntimeError):
    pass


def _call(
    method: str,
    url: str,
    *,
    body: Any = None,
    token: str | None = None,
    timeout: float = 10.0,
    retries: int = 3,
) -> tuple[int, Any]:
    """(status, parsed JSON or None). 5xx and connection errors are retried a few times."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Accept": "application/json"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    for attempt in range(retries + 1):
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with _OPENER.open(request, timeout=timeout) as resp:
                status, raw = int(resp.status), resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = int(exc.code), exc.read()
        except (urllib.error.URLError, OSError) as exc:
            if attempt < retries:
                time.sleep(0.5 * (attempt + 1))
                continue
            raise DemoError(f"{method} {url}: {exc}") from exc
        if status >= 500 and attempt < retries:
            time.sleep(0.5 * (attempt + 1))
            continue
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode("utf-8", "replace")
        return status, parsed
    raise AssertionError("unreachable")


def login(gateway_url: str, email: str, password: str) -> str:
    status, body = _call(
        "POST", f"{gateway_url}/api/v1/auth/login", body={"email": email, "password": password}
    )
    if status != 200 or not isinstance(body, dict) or "access_token" not in body:
        raise DemoError(f"admin login as {email} failed: HTTP {status} {body!r}")
    return str(body["access_token"])


def _find_by_sku(gateway_url: str, sku: str, token: str) -> dict[str, Any] | None:
    query = urllib.parse.urlencode({"q": sku, "page_size": 100})
    status, body = _call("GET", f"{gateway_url}/api/v1/products?{query}", token=token)
    if status != 200 or not isinstance(body, dict):
        raise DemoError(f"product search for {sku} failed: HTTP {status} {body!r}")
    for item in body.get("items") or []:
        if isinstance(item, dict) and item.get("sku") == sku:
            return item
    return None


def seed_demo(gateway_url: str, admin_email: str, admin_password: str) -> list[dict[str, Any]]:
    """Create (or reuse) the demo products and set their stock; returns the products.

    Each returned dict is the catalog's product plus ``on_hand`` (the stock level set).
    """
    gateway_url = gateway_url.rstrip("/")
    token = login(gateway_url, admin_email, admin_password)
    products: list[dict[str, Any]] = []
    for sku, name, description, price_cents, category, on_hand in DEMO_PRODUCTS:
        payload = {
            "sku": sku,
            "name": name,
            "description": description,
            "price_cents": price_cents,
            "currency": "USD",
            "category": category,
        }
        status, body = _call("POST", f"{gateway_url}/api/v1/products", body=payload, token=token)
        if status in (200, 201) and isinstance(body, dict) and body.get("id"):
            product = body
        elif status == 409:
            found = _find_by_sku(gateway_url, sku, token)
            if found is None:
                raise DemoError(
                    f"product {sku} exists (409) but GET /api/v1/products?q={sku} does not list it"
                )
            product = found
        else:
            raise DemoError(f"creating product {sku} failed: HTTP {status} {body!r}")
        product_id = product["id"]
        status, body = _call(
            "PUT", f"{gateway_url}/api/v1/inventory/{product_id}", body={"on_hand": on_hand}, token=token
        )
        if status not in (200, 201, 204):
            raise DemoError(f"setting stock of {sku} ({product_id}) failed: HTTP {status} {body!r}")
        products.append({**product, "on_hand": on_hand})
    return products
