"""Fixtures for ingest tests: a temp store's settings and small real documents of every format."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from configs.settings import AppSettings, load_settings


def _pdf_string(text: str) -> str:
    return "(" + text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"


def write_pdf(path: Path, pages: list[str], title: str | None = None) -> Path:
    """A minimal but valid PDF (Helvetica text, one content stream per page, exact xref offsets)."""
    page_ids = [4 + 2 * index for index in range(len(pages))]
    objects: dict[int, bytes] = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: f"<< /Type /Pages /Kids [{' '.join(f'{i} 0 R' for i in page_ids)}] /Count {len(pages)} >>".encode(),
        3: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    }
    for page_id, text in zip(page_ids, pages, strict=True):
        lines = " T* ".join(f"{_pdf_string(line)} Tj" for line in text.splitlines())
        stream = f"BT /F1 12 Tf 14 TL 72 720 Td {lines} ET".encode()
        objects[page_id] = (
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            f"/Resources << /Font << /F1 3 0 R >> >> /Contents {page_id + 1} 0 R >>"
        ).encode()
        objects[page_id + 1] = b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream)
    info_id = len(objects) + 1
    objects[info_id] = f"<< /Title {_pdf_string(title or path.stem)} >>".encode()

    body = bytearray(b"%PDF-1.4\n")
    offsets = {}
    for number in sorted(objects):
        offsets[number] = len(body)
        body += b"%d 0 obj\n%s\nendobj\n" % (number, objects[number])
    xref_at = len(body)
    body += b"xref\n0 %d\n0000000000 65535 f \n" % (info_id + 1)
    body += b"".join(b"%010d 00000 n \n" % offsets[number] for number in range(1, info_id + 1))
    body += b"trailer\n<< /Size %d /Root 1 0 R /Info %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        info_id + 1, info_id, xref_at,
    )
    path.write_bytes(bytes(body))
    return path


@pytest.fixture
def make_pdf() -> Callable[..., Path]:
    return write_pdf


@pytest.fixture
def store_settings(tmp_path: Path) -> AppSettings:
    return load_settings(
        overrides={"vector_store.persist_dir": tmp_path / "chroma", "vector_store.collection": "test_kb"}
    )


@pytest.fixture
def sample_docs(tmp_path: Path) -> Path:
    """One document per supported format, each holding one fact no other file mentions."""
    docs = tmp_path / "docs"
    (docs / "nested").mkdir(parents=True)
    (docs / "reactor.txt").write_text(
        "The Zorblax reactor runs at 451 kelvin and is cooled by liquid argon.\n", encoding="utf-8"
    )
    (docs / "nested" / "garden.md").write_text(
        "# Gardening notes\n\nTomato plants need six hours of direct sunlight and deep watering twice a week.\n",
        encoding="utf-8",
    )
    (docs / "museum.html").write_text(
        "<html><head><title>Museum hours</title><style>p { color: red }</style>"
        "<script>var secret = 'marmalade penguin';</script></head><body>"
        "<nav>Home | Tickets | Contact</nav><h1>Visiting</h1>"
        "<p>The maritime museum opens at <b>nine</b> in the morning and closes at five.</p>"
        "<footer>Copyright museum</footer></body></html>",
        encoding="utf-8",
    )
    write_pdf(
        docs / "submarine.pdf",
        [
            "Chapter one introduces the lighthouse keeper and his dog.",
            "The research submarine dives to a depth of three hundred meters.",
        ],
        title="Submarine manual",
    )
    return docs
