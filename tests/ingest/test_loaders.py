from __future__ import annotations

from pathlib import Path

import pytest

from configs.settings import IngestSettings
from ingest.loaders import DocumentLoadError, LoadedDocument, load_document


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


def written(path: Path, text: str) -> LoadedDocument:
    """The document loaded from `text` written to `path` (its suffix picks the loader)."""
    path.write_text(text, encoding="utf-8")
    return load_document(path)


def test_markdown_soft_wraps_join_their_paragraph_or_list_item_and_blocks_keep_their_lines(tmp_path: Path) -> None:
    document = written(
        tmp_path / "guide.md",
        "# Guide\nA paragraph that wraps\nonto a second line.\n\n* An item that wraps\n  onto its next line.\n"
        "* Second item.\n| a | b |\n| c | d |\n```\ncode line\nmore code\n```\nA hard break  \nnext line\n"
        "## Next\nIts first line\nand its second.\n")
    guide, following = (section.text.splitlines() for section in document.sections)
    assert guide == [
        "Guide", "A paragraph that wraps onto a second line.", "", "* An item that wraps onto its next line.",
        "* Second item.", "| a | b |", "| c | d |", "```", "code line", "more code", "```", "A hard break  ",
        "next line"]
    assert following == ["Next", "Its first line and its second."]


def test_html_reads_like_its_markdown_sections_under_headings_paragraphs_unwrapped(tmp_path: Path) -> None:
    document = written(
        tmp_path / "server.html",
        '<html><head><title>Server</title></head><body>'
        '<div role="navigation"><a href="index.html">Docs (2.2.x)</a> &#187;</div>'
        '<div role="main"><h1>Development Server<a class="headerlink" href="#s">\u00b6</a></h1>'
        "<p>If another program is already using\nport 5000, you will see an <code>OSError</code>.</p>"
        "<ul><li><p>Errno 98:<br>address in use</p></li><li>WinError 10013<ul><li>on Windows</li></ul></li></ul>"
        "<h2>Options</h2><pre>$ flask run\n    --port 5001</pre>"
        "<table><tr><th>Option</th><th>Use</th></tr><tr><td>--debug</td><td>reload on changes</td></tr></table>"
        '</div><div role="contentinfo">Copyright</div></body></html>',
    )
    assert [section.heading for section in document.sections] == [
        "Development Server", "Development Server > Options"]
    first, options = (section.text.splitlines() for section in document.sections)
    assert first[:5] == ["Development Server",
                         "If another program is already using port 5000, you will see an OSError.", "",
                         "* Errno 98: address in use", "* WinError 10013"]
    assert first[5] == "* on Windows"
    assert options[:4] == ["Options", "$ flask run", "    --port 5001", ""]
    assert "Option | Use" in options and "--debug | reload on changes" in options
    assert not any(noise in document.sections[0].text + options[-1] for noise in ("Docs (2.2.x)", "\u00b6"))
    assert "Copyright" not in "\n".join(options)


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
def test_unusable_files_raise_with_a_short_reason(
    tmp_path: Path, name: str, content: bytes, reason: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DocumentLoadError) as caught:
        load_document(path)
    assert caught.value.reason == reason


def test_pdf_without_text_is_reported(tmp_path: Path, make_pdf) -> None:
    path = make_pdf(tmp_path / "scan.pdf", [""])
    with pytest.raises(DocumentLoadError, match="no extractable text"):
        load_document(path)


def test_markdown_sections_carry_their_heading_path(tmp_path: Path) -> None:
    document = written(
        tmp_path / "guide.md",
        "---\ntitle: Operator guide\n---\nPreamble line.\n# Setup\nInstall it.\n## Linux\nUse apt.\n"
        "```bash\n# not a heading: a shell comment\n```\n### Debian\nBookworm.\n## Windows\nUse the MSI.\n"
        "# Usage\nRun it.\n")
    assert document.title == "Operator guide"  # front matter wins over the first heading
    headings = [section.heading for section in document.sections]
    assert headings == [None, "Setup", "Setup > Linux", "Setup > Linux > Debian", "Setup > Windows", "Usage"]
    assert "# not a heading" in document.sections[2].text


def test_docx_headings_title_and_tables(tmp_path: Path) -> None:
    import docx

    document = docx.Document()
    document.add_paragraph("Runbook", style="Title")
    document.add_heading("Paging", level=1)
    document.add_paragraph("Page the on-call engineer first.")
    document.add_heading("Escalation", level=2)
    document.add_paragraph("Escalate after fifteen minutes.")
    table = document.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text, table.rows[0].cells[1].text = "SEV-1", "call the commander"
    document.save(tmp_path / "runbook.docx")

    loaded = load_document(tmp_path / "runbook.docx")
    assert (loaded.kind, loaded.title) == ("docx", "Runbook")
    by_heading = {section.heading: section.text for section in loaded.sections}
    assert "Page the on-call engineer first." in by_heading["Paging"]
    assert "Escalate after fifteen minutes." in by_heading["Paging > Escalation"]
    assert "SEV-1 | call the commander" in by_heading["Paging > Escalation"]


def test_damaged_docx_is_reported(tmp_path: Path) -> None:
    (tmp_path / "locked.docx").write_bytes(
        b"\xd0\xcf\x11\xe0 an OLE container, as encrypted Office files are"
    )
    with pytest.raises(DocumentLoadError, match="not a valid DOCX"):
        load_document(tmp_path / "locked.docx")


def test_jsonl_keeps_good_records_and_reports_malformed_ones(tmp_path: Path) -> None:
    path = tmp_path / "faq.jsonl"
    path.write_text(
        '{"text": "Reset the pager token in settings.", "title": "Tokens", "tags": ["auth"], "id": 7}\n'
        "{not json\n"
        "\n"
        '{"body": "wrong field"}\n'
        '["a list"]\n'
        '{"text": "Rotate keys monthly."}\n',
        encoding="utf-8",
    )
    settings = IngestSettings(jsonl_metadata_fields=["title", "tags", "id", "absent"])
    document = load_document(path, settings)
    assert [section.text for section in document.sections] == [
        "Reset the pager token in settings.",
        "Rotate keys monthly.",
    ]
    assert document.sections[0].metadata == {"title": "Tokens", "tags": '["auth"]', "id": 7}
    assert document.sections[0].heading == "Tokens"
    assert document.problems == [
        "line 2: not JSON",
        "line 4: no text in field 'text'",
        "line 5: no text in field 'text'",
    ]


def test_jsonl_without_one_usable_record_is_skipped_with_the_first_reason(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"body": "x"}\n{oops\n', encoding="utf-8")
    with pytest.raises(DocumentLoadError, match=r"no usable records \(line 1: no text in field 'text'\)"):
        load_document(path)


def test_encrypted_pdf_is_reported(tmp_path: Path, make_pdf) -> None:
    from pypdf import PdfReader, PdfWriter

    plain = make_pdf(tmp_path / "plain.pdf", ["Quarterly numbers."])
    writer = PdfWriter()
    writer.append(PdfReader(plain))
    writer.encrypt(user_password="secret", algorithm="RC4-128")
    with (tmp_path / "locked.pdf").open("wb") as handle:
        writer.write(handle)
    with pytest.raises(DocumentLoadError) as caught:
        load_document(tmp_path / "locked.pdf")
    assert caught.value.reason == "encrypted PDF"


@pytest.mark.parametrize("name", ["empty.pdf", "empty.docx", "empty.jsonl", "empty.html"])
def test_empty_files_are_reported_as_empty(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_bytes(b"")
    with pytest.raises(DocumentLoadError) as caught:
        load_document(tmp_path / name)
    assert caught.value.reason == "empty"
