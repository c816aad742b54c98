"""Stand-ins for TaskFiles in vector backup tests: the same put_file / open_stream / delete_many contract, in
memory (small tables) or in a folder (large ones, so the test process holds nothing whole)."""
from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO


class MemoryFiles(dict):
    """name -> bytes."""

    def put_file(self, name: str, fileobj: BinaryIO, content_type: str | None = None) -> None:
        self[name] = fileobj.read()

    def delete_many(self, names: Iterable[str]) -> int:
        names = list(names)
        for name in names:
            del self[name]
        return len(names)


class FolderFiles:
    """Files under `root`, copied in and out in 64 KiB pieces."""

    def __init__(self, root: Path):
        self.root = root

    def path(self, name: str) -> Path:
        return self.root / name

    def put_file(self, name: str, fileobj: BinaryIO, content_type: str | None = None) -> None:
        target = self.path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as out:
            shutil.copyfileobj(fileobj, out, 64 * 1024)

    def open_stream(self, name: str) -> BinaryIO:
        return self.path(name).open("rb")

    def delete_many(self, names: Iterable[str]) -> int:
        names = list(names)
        for name in names:
            self.path(name).unlink()
        return len(names)

    def names(self) -> set[str]:
        return {str(p.relative_to(self.root)) for p in self.root.rglob("*") if p.is_file()}
