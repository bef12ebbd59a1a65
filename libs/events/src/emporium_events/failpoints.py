"""Crash points for fault-injection tests, off unless ``EMPORIUM_FAILPOINTS`` names them.

``EMPORIUM_FAILPOINTS="uow.after_commit=0.05,consumer.before_offset_commit=0.1"`` makes the
process kill itself with SIGKILL (no clean-up, exactly like ``kill -9``) with that probability
each time it passes the named point. The points sit in the places where a crash is most
dangerous: between a database commit and the Kafka publish, between a Kafka ack and marking the
outbox row sent, and between a handler's effect and the offset commit.
"""

from __future__ import annotations

import os
import random
import signal

POINTS = ("uow.after_commit", "relay.after_send", "consumer.before_offset_commit")


def _parse(spec: str) -> dict[str, float]:
    armed: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, probability = item.partition("=")
        if name not in POINTS:
            raise ValueError(f"unknown failpoint {name!r}; known: {', '.join(POINTS)}")
        armed[name] = float(probability or 1.0)
    return armed


_ARMED = _parse(os.environ.get("EMPORIUM_FAILPOINTS", ""))


def crash_point(name: str) -> None:
    probability = _ARMED.get(name)
    if probability and random.random() < probability:
        os.kill(os.getpid(), signal.SIGKILL)
