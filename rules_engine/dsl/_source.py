"""Source text: decoding (bad bytes become a diagnostic, never a crash) and line lookup."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["REPLACEMENT", "SourceFile"]

REPLACEMENT = "\ufffd"


@dataclass(frozen=True, slots=True)
class SourceFile:
    """One rule file: its display path and its text, decoded with `errors="replace"`."""

    path: str
    text: str
    had_bad_bytes: bool = False
    bom: bool = False  # the file began with a UTF-8 byte-order mark (not part of `text`)
    _lines: list[str] = field(default_factory=list, compare=False, repr=False)

    @staticmethod
    def from_bytes(path: str, data: bytes) -> SourceFile:
        bom = data.startswith(b"\xef\xbb\xbf")  # editors on Windows write one: accepted
        if bom:
            data = data[3:]
        try:
            return SourceFile(path, data.decode("utf-8"), bom=bom)
        except UnicodeDecodeError:
            text = data.decode("utf-8", errors="replace")
            return SourceFile(path, text, had_bad_bytes=True, bom=bom)

    @staticmethod
    def read(path: Path, display: str | None = None) -> SourceFile:
        """Read a file; IO errors propagate as OSError for the caller to report."""
        return SourceFile.from_bytes(display or str(path), path.read_bytes())

    def line(self, number: int) -> str:
        """The 1-based line `number` without its line ending ('' when out of range). Lines
        end at "\n" (or "\r\n") only, as the lexer counts them: a lone "\r", a form feed or
        "\u2028" does not start a line."""
        if not self._lines:
            self._lines.extend(line.removesuffix("\r") for line in self.text.split("\n"))
        if 1 <= number <= len(self._lines):
            return self._lines[number - 1]
        return ""
