"""Failpoints fire on exactly the hit they are armed for, in a real process (they SIGKILL it)."""

import os
import signal
import subprocess
import sys

import pytest

from emporium_events.failpoints import ENV, FIRED, POINTS, parse

# Passes each named point `times` times, printing the hit number before each pass.
PROGRAM = """
import sys
from emporium_events.failpoints import crash_point
point, times = sys.argv[1], int(sys.argv[2])
for hit in range(1, times + 1):
    print(hit, flush=True)
    crash_point(point)
print("survived", flush=True)
"""


def run(spec: str | None, point: str, times: int) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != ENV}
    if spec is not None:
        env[ENV] = spec
    return subprocess.run(
        [sys.executable, "-c", PROGRAM, point, str(times)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_spec_names_each_point_and_the_hit_it_fires_on():
    assert parse("consumer.before_offset_commit@3, uow.after_commit") == {
        "consumer.before_offset_commit": 3,
        "uow.after_commit": 1,
    }
    assert parse("") == {}
    assert parse(" , ") == {}


@pytest.mark.parametrize(
    "spec",
    [
        "uow.after_commit=0.1",  # the old probability form is gone: chance is what issue 10 removed
        "uow.after_commit@0",
        "uow.after_commit@-1",
        "uow.after_commit@x",
        "nowhere@1",
        "relay.after_send@1,relay.after_send@2",
    ],
)
def test_a_malformed_spec_is_refused_with_a_reason(spec):
    with pytest.raises(ValueError, match="failpoint"):
        parse(spec)


def test_an_armed_point_kills_its_process_with_sigkill_on_exactly_the_nth_hit():
    done = run("relay.after_send@3", "relay.after_send", 10)
    assert done.returncode == -signal.SIGKILL
    assert done.stdout.split() == ["1", "2", "3"]
    assert f"{FIRED} relay.after_send@3" in done.stderr


def test_a_bare_point_name_fires_on_the_first_hit():
    done = run("uow.after_commit", "uow.after_commit", 5)
    assert done.returncode == -signal.SIGKILL
    assert done.stdout.split() == ["1"]


def test_a_point_armed_beyond_the_hits_it_gets_never_fires():
    done = run("consumer.before_offset_commit@6", "consumer.before_offset_commit", 5)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "survived"


@pytest.mark.parametrize("spec", [None, "", "uow.after_commit@1"])
def test_points_that_are_not_armed_never_fire(spec):
    done = run(spec, "consumer.before_offset_commit", 1000)
    assert done.returncode == 0, done.stderr
    assert FIRED not in done.stderr


def test_a_bad_spec_stops_the_process_at_import_rather_than_running_unarmed():
    done = run("uow.after_commit=0.5", "uow.after_commit", 1)
    assert done.returncode == 1
    assert "expected <point>@<hit number>" in done.stderr


def test_every_point_the_code_passes_can_be_armed():
    assert parse(",".join(f"{p}@2" for p in POINTS)) == dict.fromkeys(POINTS, 2)
