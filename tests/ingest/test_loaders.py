from __future__ import annotations

from pathlib import Path

import pytest

from ingest.loaders import DocumentLoadError, load_document


def test_markdown_title_is_first_heading(sample_docs: Path) -> None:
    document = load_document(sample_docs / "nested" / "garden.md")
    assert document.kind == "markdown"
    assert document.title == "Gardening notes"
    assert "six hours of direct sunlight" in document.sections[0].text


def test_text_title_is_file_stem(sample_docs: Path) -> None:
    document = load_document(sample_docs / "reactor.txt")
    assert (document.kind, document.title) == ("text", "reactor")


def test_html_drops_scripts_styles_nav_and_footer(sample_docs: Path) -> None:
    document = load_document(sample_docs / "museum.html")
    text = document.sections[0].text
    assert document.title == "Museum hours"
    assert "opens at nine in the morning" in " ".join(text.split())
    for noise in ("marmalade", "color: red", "Tickets", "Copyright"):
        assert noise not in text


def test_pdf_pages_keep_their_numbers(sample_docs: Path) -> None:
    document = load_document(sample_docs / "submarine.pdf")
    assert document.title == "Submarine manual"
    assert [section.page for section in document.sections] == [1, 2]
    assert "three hundred meters" in document.sections[1].text


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("broken.pdf", b"%PDF-1.4 this is not really a pdf", "not a valid PDF"),
        ("picture.xyz", b"anything", "unsupported type"),
        ("blank.md", b"  \n\n ", "empty"),
        ("latin1.txt", "caf\u00e9 cr\u00e8me".encode("latin-1"), "not UTF-8 text"),
    ],
)
def test_unusable_files_raise_with_a_short_reason(tmp_path: Path, name: str, content: bytes, reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DocumentLoadError) as caught:
        load_document(path)
    assert caught.value.reason == reason


def test_pdf_without_text_is_reported(tmp_path: Path, make_pdf) -> None:
    path = make_pdf(tmp_path / "scan.pdf", [""])
    with pytest.raises(DocumentLoadError, match="no extractable text"):
        load_document(path)
