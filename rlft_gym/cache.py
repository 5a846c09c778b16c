"""The artifact cache under $RLFT_GYM_HOME: fingerprinted, hash-checked, built atomically, never half-used."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
LOCK_TIMEOUT_S = 24 * 3600.0  # builds take minutes on a GPU and hours on a CPU: wait long, but not forever


def home() -> Path:
    """Root of every cached world: `$RLFT_GYM_HOME`, else `~/.cache/rlft_gym`."""
    return Path(os.environ.get("RLFT_GYM_HOME") or Path.home() / ".cache" / "rlft_gym").expanduser()


def fingerprint(config: dict[str, Any]) -> str:
    """A short stable hash of a JSON-able build config."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def problem(directory: Path, expected_fingerprint: str, config: dict[str, Any] | None = None) -> str | None:
    """Why `directory` is not a complete artifact with this fingerprint (None when it is); given the expected
    `config`, a stale artifact's reason names the entries that changed (e.g. build_version 3 -> 4)."""
    manifest = directory / MANIFEST
    if not manifest.is_file():
        return f"{directory} has no {MANIFEST}"
    try:
        meta = json.loads(manifest.read_text())
    except (OSError, json.JSONDecodeError) as e:
        return f"{manifest} is unreadable ({e})"
    if meta.get("fingerprint") != expected_fingerprint:
        old = meta.get("config") or {}
        changed = [f"{k} {old.get(k)!r} -> {v!r}" for k, v in sorted((config or {}).items()) if old.get(k) != v]
        because = f" (built with another config: {', '.join(changed)})" if changed else ""
        return f"{directory} has fingerprint {meta.get('fingerprint')!r}, expected {expected_fingerprint!r}{because}"
    for rel, digest in meta.get("files", {}).items():
        path = directory / rel
        if not path.is_file():
            return f"{path} is missing"
        if _sha256(path) != digest:
            return f"{path} does not match its recorded hash (truncated or modified)"
    return None


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (temp file in the same directory, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=str)
    os.replace(tmp, path)


@contextlib.contextmanager
def staging(out: Path) -> Iterator[Path]:
    """A temporary directory beside `out`, removed on exit whatever happens (so a failure leaves nothing behind)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def publish(tmp: Path, out: Path) -> None:
    """Move the finished directory `tmp` to `out`, replacing what was there; `out` is never left half-written."""
    if out.exists():
        # a fresh empty directory per call, so concurrent publishers (threads too) never collide on the aside name
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def lock_path(directory: Path) -> Path:
    """The lock file guarding `directory`'s build: under `home()/.locks`, keyed by the directory's resolved path."""
    resolved = directory.expanduser().resolve()
    key = hashlib.sha256(str(resolved).encode()).hexdigest()[:16]
    # not beside the artifact: a Unix lock file cannot be deleted safely (a waiter may hold the unlinked inode),
    # and the artifact's parent must hold nothing but artifacts (and, while a build runs, its staging directory)
    return home() / ".locks" / f"{resolved.name}-{key}.lock"


@contextlib.contextmanager
def build_lock(directory: Path) -> Iterator[None]:
    """Hold the cross-process lock on `directory`'s build, logging once if another process holds it."""
    path = lock_path(directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.warning("waiting for another process building %s (lock %s, up to %.0f s)", directory, path, LOCK_TIMEOUT_S)
        lock.acquire(timeout=LOCK_TIMEOUT_S)
    try:
        yield
    finally:
        lock.release()


def ensure(directory: Path, config: dict[str, Any], build: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """Return the artifact's manifest, building it first if it is absent, stale or corrupt.

    `build(tmpdir)` writes every file into a fresh temporary directory and returns metadata; the manifest
    (fingerprint, config, metadata, file hashes) is added and the directory is moved into place in one rename.

    Concurrent callers build it once: the build runs under `build_lock` after a re-check, so the callers that waited
    return the copy the first one published. `ensure` never replaces a valid artifact (a builder replaces only what it
    found invalid while holding the lock), so the files of a returned manifest stay in place unless something else
    corrupts them or a caller with another config (another fingerprint, e.g. another code version) claims the same
    directory. The valid case takes no lock: `publish` swaps directories by renames, so a check that races a swap sees
    either a complete artifact (every listed file hashed right) or an absent or invalid one, then waits and re-checks.
    """
    fp = fingerprint(config)
    if problem(directory, fp) is None:
        return json.loads((directory / MANIFEST).read_text())
    with build_lock(directory):
        reason = problem(directory, fp, config)  # another process may have built it while this one waited
        if reason is None:
            return json.loads((directory / MANIFEST).read_text())
        if directory.exists():
            log.warning("rebuilding cached artifact: %s", reason)
        with staging(directory) as tmp:
            meta = build(tmp)
            files = {str(p.relative_to(tmp)): _sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
            manifest = {"fingerprint": fp, "config": config, "meta": meta, "files": files}
            write_json(tmp / MANIFEST, manifest)
            publish(tmp, directory)
    return manifest
