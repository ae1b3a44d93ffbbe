"""Read one file into plain text sections, one loader per format, chosen by file suffix."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from configs.errors import AppError

logger = logging.getLogger(__name__)

DocumentKind = Literal["text", "markdown", "pdf", "html"]
_MARKDOWN_HEADING = re.compile(r"^#\s+(.+?)\s*#*\s*$", re.MULTILINE)
_BLANK_RUNS = re.compile(r"\n{3,}")
# Page furniture, not content: it would otherwise be repeated in every chunk of a site.
_HTML_NOISE_TAGS = ["script", "style", "noscript", "template", "nav", "footer"]


class DocumentLoadError(AppError):
    """A file that cannot be ingested; `reason` is short enough for a one-line summary."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Section:
    text: str
    page: int | None = None  # 1-based, PDFs only


@dataclass(frozen=True)
class LoadedDocument:
    title: str
    kind: DocumentKind
    sections: list[Section]


def load_text(path: Path) -> LoadedDocument:
    return LoadedDocument(path.stem, "text", [Section(_read_utf8(path))])


def load_markdown(path: Path) -> LoadedDocument:
    text = _read_utf8(path)
    heading = _MARKDOWN_HEADING.search(text)
    return LoadedDocument(heading.group(1) if heading else path.stem, "markdown", [Section(text)])


def load_html(path: Path) -> LoadedDocument:
    from bs4 import BeautifulSoup

    # Bytes, so BeautifulSoup honours the page's declared charset.
    soup = BeautifulSoup(_read_bytes(path), "html.parser")
    for tag in soup(_HTML_NOISE_TAGS):
        tag.decompose()
    heading = soup.title or soup.find("h1")
    title = heading.get_text(" ", strip=True) if heading else ""
    body = soup.body or soup
    lines = (line.strip() for line in body.get_text().splitlines())
    text = _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip()
    return LoadedDocument(title or path.stem, "html", [Section(text)])


def load_pdf(path: Path) -> LoadedDocument:
    from pypdf import PdfReader

    data = _read_bytes(path)
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise DocumentLoadError("encrypted PDF")
        pages = [Section(page.extract_text() or "", number) for number, page in enumerate(reader.pages, 1)]
        title = (reader.metadata.title if reader.metadata else None) or path.stem
    except DocumentLoadError:
        raise
    except Exception as exc:  # pypdf raises many exception types on malformed files
        logger.debug("pypdf failed on %s", path, exc_info=True)
        raise DocumentLoadError("not a valid PDF") from exc
    pages = [page for page in pages if page.text.strip()]
    if not pages:
        raise DocumentLoadError("no extractable text (scanned PDF?)")
    return LoadedDocument(str(title), "pdf", pages)


LOADERS: dict[str, Callable[[Path], LoadedDocument]] = {
    ".txt": load_text,
    ".md": load_markdown,
    ".markdown": load_markdown,
    ".html": load_html,
    ".htm": load_html,
    ".pdf": load_pdf,
}


def load_document(path: Path) -> LoadedDocument:
    """Load a supported file; raises DocumentLoadError for anything that yields no usable text."""
    loader = LOADERS.get(path.suffix.lower())
    if loader is None:
        raise DocumentLoadError("unsupported type")
    document = loader(path)
    if not any(section.text.strip() for section in document.sections):
        raise DocumentLoadError("empty")
    return document


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DocumentLoadError(f"unreadable: {exc.strerror or exc}") from exc


def _read_utf8(path: Path) -> str:
    try:
        return _read_bytes(path).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DocumentLoadError("not UTF-8 text") from exc
