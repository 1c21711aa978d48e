"""What every benchmark does with its result: print the markdown and keep it in a file."""

from __future__ import annotations

from pathlib import Path


def publish(text: str, out: Path) -> None:
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out}")
