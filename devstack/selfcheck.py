"""Self-check: fetch Kafka jars, start a real broker and PostgreSQL, create a database, stop both.

Run: python3 devstack/selfcheck.py [--cold]   (--cold drops the cached Kafka jars first)
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "src"))

from emporium_devstack.kafka import KAFKA_VERSION, KafkaBroker, ensure_kafka_libs, metadata_ready  # noqa: E402
from emporium_devstack.postgres import PostgresCluster  # noqa: E402

CACHE = HERE.parent / ".cache"
T = TypeVar("T")


def _timed(label: str, timings: dict[str, float], fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    start = time.monotonic()
    result = fn(*args, **kwargs)
    timings[label] = time.monotonic() - start
    print(f"{label:<28} {timings[label]:7.2f} s", flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cold", action="store_true", help="delete cached Kafka jars first")
    args = parser.parse_args()

    if args.cold:
        shutil.rmtree(CACHE / f"kafka-{KAFKA_VERSION}", ignore_errors=True)
    work = CACHE / "selfcheck"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)

    timings: dict[str, float] = {}
    libs = _timed("kafka libs (first call)", timings, ensure_kafka_libs, CACHE)
    _timed("kafka libs (second call)", timings, ensure_kafka_libs, CACHE)

    broker = KafkaBroker(libs_dir=libs, data_dir=work / "kafka")
    pg = PostgresCluster(data_dir=work / "pg")
    try:
        _timed("kafka format+start (ready)", timings, broker.start)
        assert metadata_ready("127.0.0.1", broker.port or 0)
        print(f"  broker {broker.bootstrap} pid {broker.pid}")
        _timed("kafka stop", timings, broker.stop)
        _timed("kafka restart (ready)", timings, broker.start)
        _timed("postgres initdb", timings, pg.init)
        _timed("postgres start", timings, pg.start)
        _timed("postgres ensure_database", timings, pg.ensure_database, "emporium", "emporium", "emporium")
        pg.ensure_database("emporium", "emporium", "emporium")
        url = pg.url("emporium", "emporium", "emporium")
        print(f"  postgres pid {pg.pid} url {url}")
        owner = pg.psql("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'emporium'").strip()
        assert owner == "emporium", owner
    finally:
        # Both run even if the first raises.
        try:
            _timed("kafka stop (final)", timings, broker.stop)
        finally:
            _timed("postgres stop", timings, pg.stop)
    assert not broker.running and not pg.running
    print("selfcheck OK")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
