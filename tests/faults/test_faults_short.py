"""The short form of the fault-injection suite, as part of `make test` (`make faults` runs all)."""

import subprocess
import sys
from pathlib import Path

RUNNER = Path(__file__).with_name("run.py")


def test_the_short_fault_suite_finds_no_violated_invariant(capsys):
    with capsys.disabled():  # the scenario table belongs in the CI log
        print()
        done = subprocess.run([sys.executable, str(RUNNER), "--short"], timeout=1200)
    assert done.returncode == 0, "a scenario broke an invariant or missed a planned fault (see above)"
