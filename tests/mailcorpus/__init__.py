"""The mail corpus the tests read: mails the project generates itself (always), plus the
public corpus of real-world mails when it is there.

The public corpus lives outside the repository, at `../shared/corpus/public` beside the
checkout or in the folder `TENANTMAIL_CORPUS` names. A fresh clone has no such folder: the
suite then runs on the generated mails alone and says so in one line at its start
(tests/conftest.py); with CI=true its absence fails the run.

    corpus_files()      every corpus file (generated first), as paths
    corpus_name(path)   "generated/<family>/<case>.eml" or the public corpus' relative path
    generated(name)     the bytes of one generated mail, by its name without "generated/"
    public(rel)         the bytes of one public mail, or None when the public corpus is absent
    cases(name, rel)    a generated mail with a trap, plus the public mail with it when present
"""
from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile
from pathlib import Path

from .generate import generate as generate_mails

REPO = Path(__file__).resolve().parents[2]
DEFAULT_PUBLIC = REPO.parent / "shared" / "corpus" / "public"


def public_where() -> Path:
    """Where the public corpus is looked for."""
    override = os.environ.get("TENANTMAIL_CORPUS")
    return Path(override) if override else DEFAULT_PUBLIC


def public_dir() -> Path | None:
    path = public_where()
    return path.resolve() if path.is_dir() and any(path.iterdir()) else None


def running_in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def status_line() -> str:
    """The one line the suite prints at its start."""
    root = public_dir()
    count = len(_generated())
    if root is None:
        return (f"mail corpus: {count} generated mails; the public corpus is NOT at {public_where()} "
                "(set TENANTMAIL_CORPUS to use it; with CI=true its absence fails the run)")
    return f"mail corpus: {count} generated mails + {len(public_files())} public mails from {root}"


@functools.cache
def _generated() -> tuple[tuple[str, bytes], ...]:
    return tuple(generate_mails())


@functools.cache
def generated_root() -> Path:
    """A temporary folder holding the generated mails under generated/ (removed at exit)."""
    root = Path(tempfile.mkdtemp(prefix="tenantmail-corpus-"))
    owner = os.getpid()
    atexit.register(lambda: os.getpid() == owner and shutil.rmtree(root, ignore_errors=True))
    for name, raw in _generated():
        path = root / "generated" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(raw)
    return root


def generated_files() -> list[Path]:
    root = generated_root()
    return [root / "generated" / name for name, _ in _generated()]


def public_files() -> list[Path]:
    root = public_dir()
    if root is None:
        return []
    manifest = root / "MANIFEST.tsv"
    if manifest.exists():
        names = [line.split("\t", 1)[0] for line in manifest.read_text().splitlines()[1:] if line.strip()]
        files = [root / n for n in names]
    else:
        files = [p for p in root.rglob("*") if p.is_file() and p.name not in ("SOURCES.md", "MANIFEST.tsv")]
    missing = [str(p) for p in files if not p.is_file()]
    assert not missing, f"public corpus files listed but missing: {missing[:5]}"
    assert len(files) > 100, f"the public corpus at {root} looks incomplete ({len(files)} files)"
    return sorted(files)


def corpus_files() -> list[Path]:
    return generated_files() + public_files()


def corpus_name(path: Path) -> str:
    for root in (generated_root(), public_dir()):
        if root is not None and path.is_relative_to(root):
            return str(path.relative_to(root))
    return str(path)


def generated(name: str) -> bytes:
    found = dict(_generated())
    assert name in found, f"{name} is not a generated mail"
    return found[name]


def generated_path(name: str) -> Path:
    generated(name)
    return generated_root() / "generated" / name


def public(rel: str) -> bytes | None:
    root = public_dir()
    if root is None:
        return None
    path = root / rel
    assert path.is_file(), f"{rel} not in the public corpus at {root}"
    return path.read_bytes()


def cases(name: str, rel: str) -> list[tuple[str, bytes]]:
    """A generated mail with a trap, and the public mail that showed the trap when present:
    [(corpus name, bytes)], the generated one always first."""
    out = [(f"generated/{name}", generated(name))]
    raw = public(rel)
    if raw is not None:
        out.append((rel, raw))
    return out
