"""Text extraction from uploaded files: plain text, markdown, HTML, JSON and PDF."""

from __future__ import annotations

import io
import json
from html.parser import HTMLParser

TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".rst", ".csv", ".log", ".py", ".yaml", ".yml", ".toml", ".tex"}


class UnsupportedFileError(ValueError):
    """The file's type or content cannot be turned into text."""


class _HTMLText(HTMLParser):
    SKIP = {"script", "style", "head", "noscript"}
    BLOCK = {"p", "div", "br", "li", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "section", "article", "pre"}

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self._skip += 1
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in self.SKIP and self._skip:
            self._skip -= 1
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def _decode(data: bytes) -> str:
    for enc in ("utf-8", "utf-16"):
        try:
            return data.decode(enc)
        except UnicodeDecodeError:
            continue
    raise UnsupportedFileError("the file is not valid UTF-8 text")


def extract_text(filename: str, data: bytes) -> str:
    name = filename.lower()
    suffix = name[name.rfind("."):] if "." in name else ""
    if suffix == ".pdf" or data[:5] == b"%PDF-":
        from pypdf import PdfReader
        from pypdf.errors import PdfReadError

        try:
            reader = PdfReader(io.BytesIO(data))
            return "\n\n".join((page.extract_text() or "") for page in reader.pages).replace("\x00", "")
        except (PdfReadError, ValueError, KeyError) as e:
            raise UnsupportedFileError(f"could not read the PDF: {e}") from None
    if b"\x00" in data[:4096] and suffix not in TEXT_SUFFIXES:
        raise UnsupportedFileError(f"binary file type '{suffix or 'unknown'}' is not supported")
    text = _decode(data).replace("\x00", "")  # NULs carry no text (and PostgreSQL text cannot hold them)
    if suffix in (".html", ".htm") or text.lstrip()[:15].lower().startswith(("<!doctype html", "<html")):
        p = _HTMLText()
        p.feed(text)
        return "\n".join(line.strip() for line in "".join(p.parts).splitlines() if line.strip())
    if suffix in (".json", ".jsonl"):
        try:
            return json.dumps(json.loads(text), indent=1, ensure_ascii=False)
        except (json.JSONDecodeError, RecursionError):
            return text  # jsonl, loose or absurdly nested json: index as text
    return text
