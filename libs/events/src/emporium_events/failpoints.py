"""Crash points for fault-injection tests, off unless ``EMPORIUM_FAILPOINTS`` names them.

``EMPORIUM_FAILPOINTS="consumer.before_offset_commit@3"`` makes the process kill itself with
SIGKILL (no clean-up, exactly like ``kill -9``) the 3rd time it passes that point; a bare name
means ``@1``. Several points are separated by commas; hits are counted per point and per
process, so a restarted process counts from zero again (the fault suite re-arms a service by
restarting it with the variable set, and disarms it by restarting it without).

Deterministic on purpose: the fault suite must inject exactly the crashes it plans (issue 10),
so there is no probability form; which hit to crash on is the suite's choice (its seed).

The points sit where a crash is most dangerous: between a database commit and the Kafka
publish, between a Kafka ack and marking the outbox row sent, and between a handler's effect
and the offset commit. Unarmed, a point costs one dict lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "EMPORIUM_FAILPOINTS"
POINTS = ("uow.after_commit", "relay.after_send", "consumer.before_offset_commit")
FIRED = "failpoint fired:"  # the line written to stderr just before the kill


def parse(spec: str) -> dict[str, int]:
    """``"a@3,b"`` -> ``{"a": 3, "b": 1}``: each armed point and the hit it fires on."""
    armed: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        if "=" in item:  # the old "point=probability" form: say so rather than "unknown point"
            raise ValueError(f"failpoint {item!r}: expected <point>@<hit number>, not a probability")
        name, at, hit = item.partition("@")
        name = name.strip()
        if name not in POINTS:
            raise ValueError(f"unknown failpoint {name!r} in {ENV}; known: {', '.join(POINTS)}")
        if name in armed:
            raise ValueError(f"failpoint {name!r} armed twice in {ENV}")
        try:
            armed[name] = int(hit) if at else 1
        except ValueError:
            raise ValueError(f"failpoint {item!r}: expected <point>@<hit number>, e.g. {name}@3") from None
        if armed[name] < 1:
            raise ValueError(f"failpoint {item!r}: the hit number counts from 1")
    return armed


_ARMED = parse(os.environ.get(ENV, ""))
_HITS = dict.fromkeys(_ARMED, 0)


def crash_point(name: str) -> None:
    fire_on = _ARMED.get(name)
    if fire_on is None:
        return
    _HITS[name] += 1
    if _HITS[name] == fire_on:
        # Unbuffered, straight to fd 2: the harness reads it to tell this crash from any other.
        os.write(2, f"{FIRED} {name}@{fire_on} pid={os.getpid()}\n".encode())
        os.kill(os.getpid(), signal.SIGKILL)
