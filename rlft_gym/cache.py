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

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"


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


def problem(directory: Path, expected_fingerprint: str) -> str | None:
    """Why `directory` is not a complete artifact with this fingerprint (None when it is)."""
    manifest = directory / MANIFEST
    if not manifest.is_file():
        return f"{directory} has no {MANIFEST}"
    try:
        meta = json.loads(manifest.read_text())
    except (OSError, json.JSONDecodeError) as e:
        return f"{manifest} is unreadable ({e})"
    if meta.get("fingerprint") != expected_fingerprint:
        return f"{directory} has fingerprint {meta.get('fingerprint')!r}, expected {expected_fingerprint!r}"
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
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def ensure(directory: Path, config: dict[str, Any], build: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """Return the artifact's manifest, building it first if it is absent, stale or corrupt.

    `build(tmpdir)` writes every file into a fresh temporary directory and returns metadata; the manifest
    (fingerprint, config, metadata, file hashes) is added and the directory is moved into place in one rename.
    """
    fp = fingerprint(config)
    reason = problem(directory, fp)
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
