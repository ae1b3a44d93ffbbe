"""Read one file into plain-text sections, one loader per format, chosen by file suffix.

A section is the unit the chunker splits: a Markdown, HTML or DOCX section under its heading path, a PDF
page, a JSONL record. Its heading, page and record metadata travel into every chunk cut from it.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import yaml

from configs.errors import AppError
from configs.settings import IngestSettings

if TYPE_CHECKING:
    from bs4 import Tag
    from pypdf import PdfReader

logger = logging.getLogger(__name__)

DocumentKind = Literal["text", "markdown", "pdf", "html", "docx", "jsonl"]
MetadataValue = str | int | float | bool
_ATX_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.DOTALL)
# Lines that start a Markdown block of their own (list item, quote, table row, HTML, fence, admonition); any
# other line right after a paragraph or list item line continues it: Markdown's soft wrap.
_MD_LIST_ITEM = re.compile(r"^\s*(?:[*+-]|\d+[.)])\s")
_MD_BLOCK_START = re.compile(r"^\s*(?:[*+-]\s|\d+[.)]\s|[>|<]|```|~~~|!!!|\?\?\?)")
# Page furniture, not content: it would otherwise be repeated in every chunk of a site.
_HTML_NOISE_TAGS = ["script", "style", "noscript", "template", "nav", "footer", "aside", "form", "svg", "iframe"]
_HTML_NOISE_ROLES = ["navigation", "banner", "contentinfo", "search", "complementary"]
_HTML_HEADINGS = ["h1", "h2", "h3", "h4", "h5", "h6"]
_HTML_NESTED = ["ul", "ol", "pre", "table", "dl", "div", "blockquote"]  # blocks a list item can hold
_HTML_BLOCKS = [*_HTML_HEADINGS, *_HTML_NESTED, "p", "li", "tr", "dt", "dd", "section", "article", "main"]
HEADING_SEPARATOR = " > "


class DocumentLoadError(AppError):
    """A file that cannot be ingested; `reason` is short enough for a one-line summary."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Section:
    text: str
    page: int | None = None  # 1-based, PDFs only
    heading: str | None = None  # "Chapter > Section", Markdown, HTML and DOCX only
    metadata: dict[str, MetadataValue] = field(default_factory=dict)  # JSONL record fields


@dataclass(frozen=True)
class LoadedDocument:
    title: str
    kind: DocumentKind
    sections: list[Section]
    problems: list[str] = field(default_factory=list)  # records skipped inside an otherwise usable file


def sections_under_headings(blocks: Iterable[tuple[int | None, str]]) -> list[Section]:
    """(heading level or None, text) blocks -> one section per heading, named by its heading path."""
    path: list[tuple[int, str]] = []
    sections: list[Section] = []
    lines: list[str] = []

    def close() -> None:
        text = "\n".join(lines).strip()
        if text:
            heading = HEADING_SEPARATOR.join(title for _, title in path) or None
            sections.append(Section(text, heading=heading))
        lines.clear()

    for level, text in blocks:
        if level is None:
            lines.append(text)
            continue
        close()
        path = [(lvl, title) for lvl, title in path if lvl < level] + [(level, text.strip())]
        lines.append(text.strip())  # the heading's words belong to its section's text, for search
    close()
    return sections


def load_text(path: Path, settings: IngestSettings) -> LoadedDocument:
    return LoadedDocument(path.stem, "text", [Section(_read_utf8(path))])


def load_markdown(path: Path, settings: IngestSettings) -> LoadedDocument:
    text = _read_utf8(path)
    title = None
    front = _FRONT_MATTER.match(text)
    if front:
        text = text[front.end() :]
        try:
            meta = yaml.safe_load(front.group(1))
        except yaml.YAMLError:
            meta = None
        if isinstance(meta, dict) and meta.get("title"):
            title = str(meta["title"])
    blocks: list[tuple[int | None, str]] = []
    in_fence = joinable = False  # joinable: the last block is a paragraph line the next line may continue
    for line in text.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
        heading = None if in_fence else _ATX_HEADING.match(line)
        if heading:
            level = len(heading.group(1))
            blocks.append((level, heading.group(2)))
            if title is None and level == 1:
                title = heading.group(2)
            joinable = False
            continue
        if joinable and line.strip() and not in_fence and not _MD_BLOCK_START.match(line):
            blocks[-1] = (None, blocks[-1][1].rstrip() + " " + line.strip())  # a soft wrap, not a new line
        else:
            blocks.append((None, line))
        last = blocks[-1][1]
        hard_break = last.endswith(("  ", "\\"))  # two trailing spaces or a backslash end the line on purpose
        joinable = (not in_fence and bool(last.strip()) and not hard_break
                    and (bool(_MD_LIST_ITEM.match(last)) or not _MD_BLOCK_START.match(last)))
    return LoadedDocument(title or path.stem, "markdown", sections_under_headings(blocks))


def load_html(path: Path, settings: IngestSettings) -> LoadedDocument:
    from bs4 import BeautifulSoup

    # Bytes, so BeautifulSoup honours the page's declared charset.
    soup = BeautifulSoup(_read_bytes(path), "html.parser")
    for tag in soup(_HTML_NOISE_TAGS):
        tag.decompose()
    for tag in soup.find_all(attrs={"role": _HTML_NOISE_ROLES}) + soup.find_all("a", class_="headerlink"):
        tag.decompose()  # landmarks of page furniture; the pilcrow links a documentation generator puts on headings
    for line_break in soup("br"):
        line_break.replace_with("\n")  # inline text is joined as written: a <br> is the only break between words
    heading = soup.title or soup.find("h1")
    title = heading.get_text(" ", strip=True) if heading else ""
    content = soup.find("main") or soup.find(attrs={"role": "main"}) or soup.body or soup
    return LoadedDocument(title or path.stem, "html", sections_under_headings(_html_blocks(content)))


def _html_blocks(element: Tag) -> Iterator[tuple[int | None, str]]:
    """(heading level or None, text) blocks in reading order, as the Markdown loader gives them: a paragraph is
    one line (the source's line wraps are not sentence ends), a list item a "* " line, a table row one line
    with its cells, preformatted text keeps its lines, and blocks are separated by a blank line."""
    from bs4 import Comment, Declaration, Doctype, NavigableString, ProcessingInstruction

    for child in element.children:
        if isinstance(child, Comment | Declaration | Doctype | ProcessingInstruction):
            continue
        if isinstance(child, NavigableString):
            if child.strip():
                yield None, _one_line(child)
            continue
        yield from _html_block(child)


def _html_block(tag: Tag) -> Iterator[tuple[int | None, str]]:
    if tag.name in _HTML_HEADINGS:
        yield int(tag.name[1]), _one_line(tag.get_text())
    elif tag.name == "pre":
        yield None, tag.get_text().strip("\n")
        yield None, ""
    elif tag.name == "tr":
        yield None, " | ".join(filter(None, (_one_line(cell.get_text())
                                            for cell in tag.find_all(["td", "th"], recursive=False))))
    elif tag.name == "li":  # its own words as one item, then any list, code or table nested in it
        nested = tag.find_all(_HTML_NESTED, recursive=False)
        own = _one_line("".join(part.get_text() for part in tag.contents if part.name not in _HTML_NESTED))
        if own:
            yield None, "* " + own
        for part in nested:
            yield from _html_block(part)
    elif tag.find(_HTML_BLOCKS) is not None:  # a container (div, section, list, table): its blocks in order
        yield from _html_blocks(tag)
        if tag.name in ("ul", "ol", "table", "dl"):
            yield None, ""
    elif text := _one_line(tag.get_text()):  # a paragraph, or inline content standing alone
        yield None, text
        yield None, ""


def _one_line(text: str) -> str:
    return " ".join(text.split())


def load_pdf(path: Path, settings: IngestSettings) -> LoadedDocument:
    from pypdf import PdfReader

    data = _read_bytes(path)
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not _opens_without_password(reader):
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


def _opens_without_password(reader: PdfReader) -> bool:
    try:
        return bool(reader.decrypt(""))
    except Exception:  # pypdf needs the optional `cryptography` package for AES: locked to us either way
        logger.debug("pypdf could not try the empty password", exc_info=True)
        return False


def load_docx(path: Path, settings: IngestSettings) -> LoadedDocument:
    import docx

    data = _read_bytes(path)
    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as exc:  # python-docx raises zip and XML errors; an encrypted DOCX is not a zip
        logger.debug("python-docx failed on %s", path, exc_info=True)
        raise DocumentLoadError("not a valid DOCX (encrypted or damaged?)") from exc
    title = document.core_properties.title or None
    blocks: list[tuple[int | None, str]] = []
    for paragraph in document.paragraphs:
        style = paragraph.style.name if paragraph.style is not None else ""
        level = _docx_heading_level(style)
        if style == "Title" and title is None:
            title = paragraph.text.strip() or None
        blocks.append((level, paragraph.text) if paragraph.text.strip() or level is None else (None, ""))
    for table in document.tables:  # tables after the prose: their cells are content too
        for row in table.rows:
            blocks.append((None, " | ".join(cell.text.strip() for cell in row.cells)))
    return LoadedDocument(title or path.stem, "docx", sections_under_headings(blocks))


def _docx_heading_level(style: str) -> int | None:
    if style.startswith("Heading "):
        suffix = style.removeprefix("Heading ")
        return int(suffix) if suffix.isdigit() else None
    return None


def load_jsonl(path: Path, settings: IngestSettings) -> LoadedDocument:
    """One section per record: `ingest.jsonl_text_field` is the text, `jsonl_metadata_fields` ride along."""
    text_field, wanted = settings.jsonl_text_field, settings.jsonl_metadata_fields
    sections: list[Section] = []
    problems: list[str] = []
    for number, line in enumerate(_read_utf8(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            problems.append(f"line {number}: not JSON")
            continue
        text = record.get(text_field) if isinstance(record, dict) else None
        if not isinstance(text, str) or not text.strip():
            problems.append(f"line {number}: no text in field {text_field!r}")
            continue
        metadata = {key: _metadata_value(record[key]) for key in wanted if record.get(key) is not None}
        sections.append(Section(text, heading=str(metadata.get("title", "")) or None, metadata=metadata))
    if not sections and problems:
        raise DocumentLoadError(f"no usable records ({problems[0]})")
    return LoadedDocument(path.stem, "jsonl", sections, problems)


def _metadata_value(value: object) -> MetadataValue:
    # Chroma stores scalars only; lists and objects keep their JSON form.
    return value if isinstance(value, str | int | float | bool) else json.dumps(value, ensure_ascii=False)


LOADERS: dict[str, Callable[[Path, IngestSettings], LoadedDocument]] = {
    ".txt": load_text,
    ".md": load_markdown,
    ".markdown": load_markdown,
    ".html": load_html,
    ".htm": load_html,
    ".pdf": load_pdf,
    ".docx": load_docx,
    ".jsonl": load_jsonl,
}


def load_document(path: Path, settings: IngestSettings | None = None) -> LoadedDocument:
    """Load a supported file; raises DocumentLoadError for anything that yields no usable text."""
    loader = LOADERS.get(path.suffix.lower())
    if loader is None:
        raise DocumentLoadError("unsupported type")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DocumentLoadError(f"unreadable: {exc.strerror or exc}") from exc
    if size == 0:  # said before a binary format's parser calls it damaged
        raise DocumentLoadError("empty")
    document = loader(path, settings or IngestSettings())
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
