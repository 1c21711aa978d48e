"""What made a figure: fingerprints of the code, the data and the vocabulary a cell used.

- Code: the package version, the git commit and whether the package's files differ from it
  (`dirty`), and a hash of the package's own source files (`source_hash`), which is what
  `--resume` compares: it is the same in a wheel, an editable install, a worktree or a copy,
  and it changes with any edit, committed or not.
- Data: a hash of the rows a cell trained and was evaluated on (texts and labels, after
  subsetting), so an edited file or a changed dataset revision shows, wherever the data lives.
- Local data files: a hash of their bytes, so a task's config hash follows the file's content,
  not its absolute path (a moved checkout resumes; an edited CSV does not).
- Vocabulary: a hash of the tokenizer's token → id table (the records made before
  `harness/wordpiece.py` have a table that tokenizers' trainer drew in hash-map order).

This module imports no torch: the driver fingerprints the code before it resumes a run.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import dataclass
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
SOURCE_SUFFIXES = (".py", ".yaml", ".j2", ".html", ".css", ".js")


@dataclass(frozen=True)
class CodeFingerprint:
    version: str | None
    commit: str | None
    dirty: bool | None  # the package's files differ from `commit`; None outside a git checkout
    source_hash: str

    def describe(self) -> str:
        """`0.1.0, commit 06b46bf (dirty), source 1a2b3c4d5e6f7a8b`."""
        commit = f"commit {self.commit[:7]}{' (dirty)' if self.dirty else ''}" if self.commit else "no commit"
        return f"{self.version or '?'}, {commit}, source {self.source_hash}"


def source_hash(root: Path = PACKAGE_DIR) -> str:
    """sha256 over the package's source files (relative path and bytes, in path order), 16 hex."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.suffix in SOURCE_SUFFIXES and p.is_file()):
        if "__pycache__" in path.parts:
            continue
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=PACKAGE_DIR, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@cache
def code_fingerprint() -> CodeFingerprint:
    """This process's code, computed once: a cell asks as it starts, before it imports the
    modules it loads lazily, so an edit made while it runs is not taken for the code it ran."""
    try:
        package_version = version("text-classifier-harness")
    except PackageNotFoundError:
        package_version = None
    commit = _git("rev-parse", "HEAD") or None
    changes = _git("status", "--porcelain", "--untracked-files=no", "--", ".") if commit else None
    return CodeFingerprint(package_version, commit, None if changes is None else bool(changes), source_hash())


def file_hash(path: str | Path) -> str:
    """sha256 of a file's bytes, 16 hex; the path itself when it is not a readable file (the
    loader reports that case with its own message)."""
    try:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()[:16]
    except OSError:
        return str(path)


def combined(parts: dict[str, str]) -> str:
    """One 16-hex fingerprint of named parts (e.g. each split's rows)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def vocabulary_hash(tokenizer) -> str:
    """sha256 of the tokenizer's token → id table, 16 hex."""
    table = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    return hashlib.sha256(json.dumps(table, ensure_ascii=False).encode()).hexdigest()[:16]
