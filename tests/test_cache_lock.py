"""Concurrent `cache.ensure` callers in separate processes: one build, one published copy, never a half-state."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from rlft_gym import cache

ROOT = Path(__file__).resolve().parents[1]
FILES = ["a.bin", "b.bin", "c.bin"]

# One worker process. argv: role ("ensure" or "read"), artifact directory, sync folder, how many workers start together.
# Workers meet at a barrier of files in the sync folder before touching the cache; a builder (several workers) holds
# its build until a peer has logged that it waits on the lock, so the contended path runs whatever the scheduling.
WORKER = r"""
import json, logging, os, sys, time
from pathlib import Path

from rlft_gym import cache

role, directory, sync, workers = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
CONFIG = {"artifact": "fake", "version": 1}
FILES = ["a.bin", "b.bin", "c.bin"]
GIVE_UP = time.monotonic() + 120  # only so that a broken lock fails the test instead of hanging it


def content(name):
    return (name * 50_000).encode()


def wait_until(ready):
    while not ready() and time.monotonic() < GIVE_UP:
        time.sleep(0.02)


class Contended(logging.Handler):
    def emit(self, record):
        if record.getMessage().startswith("waiting for another process building"):
            (sync / "contended").touch()


def build(tmp):
    with (sync / "builds").open("a") as f:
        f.write(f"{os.getpid()}\n")
    if workers > 1:
        wait_until((sync / "contended").exists)
    for name in FILES:  # each file written in two halves, a pause between: a half-written state exists in staging
        data = content(name)
        with (tmp / name).open("wb") as f:
            f.write(data[: len(data) // 2])
            f.flush()
            time.sleep(0.05)
            f.write(data[len(data) // 2 :])
    return {"builder": os.getpid()}


def barrier():
    (sync / f"ready-{os.getpid()}").touch()
    wait_until(lambda: len(list(sync.glob("ready-*"))) >= workers)


def read():
    fp = cache.fingerprint(CONFIG)
    seen, errors, valid = ["invalid" if cache.problem(directory, fp) else "valid"], [], 0
    barrier()  # joins only once it has checked the artifact as it was, so before any rebuild can start
    while valid < 20 and time.monotonic() < GIVE_UP:
        state = "invalid" if cache.problem(directory, fp) else "valid"
        if state == "valid":
            valid += 1
            for name in FILES:
                try:
                    if (directory / name).read_bytes() != content(name):
                        errors.append(f"{name} incomplete after a valid check")
                except OSError as e:
                    errors.append(f"{name} unreadable after a valid check ({e})")
        if seen[-1] != state:
            seen.append(state)
        time.sleep(0.01)
    print(json.dumps({"seen": seen, "errors": errors}))


logging.getLogger("rlft_gym.cache").addHandler(Contended())
if role == "read":
    read()
else:
    barrier()
    print(json.dumps(cache.ensure(directory, CONFIG, build)))
"""


def _start(tmp_path: Path, role: str, directory: Path, sync: Path, workers: int) -> subprocess.Popen[str]:
    """Start one worker process on the temporary cache home."""
    script = tmp_path / "worker.py"
    if not script.exists():
        script.write_text(WORKER)
    sync.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "RLFT_GYM_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT)}
    args = [sys.executable, str(script), role, str(directory), str(sync), str(workers)]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _result(proc: subprocess.Popen[str]) -> dict:
    """The JSON a worker printed, after checking it exited cleanly."""
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return json.loads(out)


def _assert_complete(directory: Path, manifest: dict) -> None:
    """The published artifact is valid, holds every file, and its parent holds nothing else (no staging, no aside)."""
    assert cache.problem(directory, manifest["fingerprint"]) is None
    assert sorted(manifest["files"]) == FILES
    assert [p.name for p in directory.parent.iterdir()] == [directory.name]


def test_concurrent_ensure_builds_once(tmp_path):
    directory, sync = tmp_path / "home" / "worlds" / "art", tmp_path / "sync"
    procs = [_start(tmp_path, "ensure", directory, sync, workers=2) for _ in range(2)]
    manifests = [_result(p) for p in procs]
    assert len((sync / "builds").read_text().splitlines()) == 1
    assert (sync / "contended").exists()  # the second caller really waited on the lock
    assert manifests[0] == manifests[1]
    _assert_complete(directory, manifests[0])


def test_rebuild_of_corrupt_artifact_is_never_seen_half_done(tmp_path):
    directory = tmp_path / "home" / "worlds" / "art"
    first = _result(_start(tmp_path, "ensure", directory, tmp_path / "first", workers=1))
    (directory / "b.bin").write_bytes(b"truncated")
    sync = tmp_path / "sync"
    reader = _start(tmp_path, "read", directory, sync, workers=3)
    builders = [_start(tmp_path, "ensure", directory, sync, workers=3) for _ in range(2)]
    manifests = [_result(p) for p in builders]
    seen = _result(reader)
    assert seen == {"seen": ["invalid", "valid"], "errors": []}
    assert len((sync / "builds").read_text().splitlines()) == 1
    assert manifests[0] == manifests[1] and manifests[0]["files"] == first["files"]
    _assert_complete(directory, manifests[0])
