"""One run per output folder: a live holder keeps others out and is named; a holder killed with SIGKILL
leaves a stale lock file that does not block."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from duelist.errors import USER_ERRORS
from duelist.train.lock import LOCK_FILE, RunLock, RunLockedError, clear_run, holder, run_files

HOLD = """
import sys, time
from duelist.train.lock import RunLock
RunLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(120)
"""
TRY = """
import sys
from duelist.train.lock import RunLock, RunLockedError
try:
    RunLock(sys.argv[1]).acquire()
except RunLockedError as e:
    print(e, file=sys.stderr)
    sys.exit(2)
print("acquired")
"""


@pytest.fixture
def held(tmp_path):
    """A subprocess holding the lock on tmp_path/run."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def test_second_process_fails_naming_the_holder(held, tmp_path):
    run = tmp_path / "run"
    other = subprocess.run([sys.executable, "-c", TRY, str(run)], capture_output=True, text=True)
    assert other.returncode == 2
    assert f"{run} is in use by pid {held.pid} on {socket.gethostname()}, started " in other.stderr
    with pytest.raises(RunLockedError, match=f"pid {held.pid}") as e:
        RunLock(run).acquire()
    assert isinstance(e.value, USER_ERRORS)
    assert holder(run)["pid"] == held.pid


def test_stale_lock_after_kill9_does_not_block(held, tmp_path):
    run = tmp_path / "run"
    os.kill(held.pid, signal.SIGKILL)
    held.wait()
    assert json.loads((run / LOCK_FILE).read_text())["pid"] == held.pid  # the file stays behind, stale
    assert holder(run) is None
    other = subprocess.run([sys.executable, "-c", TRY, str(run)], capture_output=True, text=True)
    assert other.returncode == 0 and other.stdout.strip() == "acquired"
    with RunLock(run):
        assert json.loads((run / LOCK_FILE).read_text())["pid"] == os.getpid()
        assert holder(run)["pid"] == os.getpid()


def test_release_leaves_nothing_behind(tmp_path):
    """A run that stops (e.g. on bad data) removes its lock file, and the folder the lock created."""
    run = tmp_path / "new" / "run"
    with RunLock(run):
        assert run_files(run) == []
    assert not run.exists() and (tmp_path / "new").exists()
    run.mkdir(parents=True)
    (run / "metrics.jsonl").write_text("{}\n")
    with RunLock(run):
        pass
    assert [p.name for p in run.iterdir()] == ["metrics.jsonl"]


def test_overwrite_clears_the_run_but_keeps_the_lock(tmp_path):
    run = tmp_path / "run"
    with RunLock(run) as lock:
        (run / "checkpoints" / "step-000001").mkdir(parents=True)
        (run / "metrics.jsonl").write_text("{}\n")
        assert [p.name for p in run_files(run)] == ["checkpoints", "metrics.jsonl"]
        clear_run(run)
        assert [p.name for p in run.iterdir()] == [LOCK_FILE]
        with pytest.raises(RunLockedError):
            RunLock(run).acquire()
        assert lock.path.exists()
