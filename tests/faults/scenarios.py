"""Every fault scenario, and the short set that `make test` runs.

Each scenario plans a fixed number of faults and must inject exactly that many (issue 10): ALL
plans 44 (6 kills, 3 x 6 failpoint crashes, 1 broker kill, 1 PostgreSQL shutdown, 3 pauses,
2 x 5 proxy fault windows, 3 rewinds, 2 poison messages), SHORT plans 9.
"""

from __future__ import annotations

from functools import partial

from harness import (
    Scenario,
    crash_at,
    kill_and_restart,
    kill_broker,
    pause,
    plant_poison,
    postgres_immediate,
    proxy_fault,
    rewind,
)

from emporium_events import topics

ALL = [
    Scenario(
        "kill -9 every service and the gateway",
        partial(
            kill_and_restart, names=["catalog", "inventory", "orders", "payments", "notifications", "gateway"]
        ),
    ),
    Scenario(
        "crash between commit and publish",
        partial(crash_at, point="uow.after_commit", names=["orders", "inventory", "payments"], crashes=2),
    ),
    Scenario(
        "crash between Kafka ack and marking sent",
        partial(crash_at, point="relay.after_send", names=["orders", "inventory", "payments"], crashes=2),
        duplicates_expected=True,
    ),
    Scenario(
        "crash between effect and offset commit",
        partial(
            crash_at,
            point="consumer.before_offset_commit",
            names=["inventory", "payments", "orders"],
            crashes=2,
        ),
        duplicates_expected=True,
    ),
    Scenario("kill -9 the Kafka broker", kill_broker),
    Scenario("PostgreSQL immediate shutdown", postgres_immediate),
    Scenario(
        "SIGSTOP services 1-10 s", partial(pause, names=["inventory", "payments", "orders"], low=1, high=10)
    ),
    Scenario("Kafka: 200 ms latency", partial(proxy_fault, which="kafka", kind="latency")),
    Scenario("Kafka: connection resets", partial(proxy_fault, which="kafka", kind="reset")),
    Scenario("Kafka: blackhole 4 s", partial(proxy_fault, which="kafka", kind="blackhole")),
    Scenario("PostgreSQL: 200 ms latency", partial(proxy_fault, which="postgres", kind="latency")),
    Scenario("PostgreSQL: connection resets", partial(proxy_fault, which="postgres", kind="reset")),
    Scenario("PostgreSQL: blackhole 4 s", partial(proxy_fault, which="postgres", kind="blackhole")),
    Scenario(
        "duplicate delivery (groups rewound)",
        partial(
            rewind,
            groups={
                "inventory": [topics.ORDERS, topics.CATALOG],
                "payments": [topics.ORDERS, topics.INVENTORY],
                "orders": [topics.INVENTORY, topics.PAYMENTS],
            },
        ),
        duplicates_expected=True,
    ),
    Scenario("poison messages", partial(plant_poison, topics=[topics.ORDERS, topics.INVENTORY]), poison=True),
]

SHORT = [
    Scenario("kill -9 inventory and orders", partial(kill_and_restart, names=["inventory", "orders"])),
    Scenario(
        "crash between commit and publish",
        partial(crash_at, point="uow.after_commit", names=["orders", "inventory"], crashes=1),
    ),
    Scenario("kill -9 the Kafka broker", kill_broker),
    Scenario("PostgreSQL immediate shutdown", postgres_immediate),
    Scenario(
        "duplicate delivery (groups rewound)",
        partial(rewind, groups={"inventory": [topics.ORDERS], "payments": [topics.ORDERS, topics.INVENTORY]}),
        duplicates_expected=True,
    ),
    Scenario("poison messages", partial(plant_poison, topics=[topics.ORDERS]), poison=True),
]
