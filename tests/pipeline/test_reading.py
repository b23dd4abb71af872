import codecs
import zipfile
from pathlib import Path

import pytest

from pipeline.errors import InputError
from pipeline.reading import ReadOptions, read_book
from pipeline.reading.decode import decode_text
from pipeline.reading.headings import HeadingMatcher

CHINESE = "第一章 开端\n\n亲爱的你，\n你好呀。\n\n第二章 结局\n\n结束了。\n"


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# --- encodings ---------------------------------------------------------------------------
@pytest.mark.parametrize("encoded, encoding", [
    (CHINESE.encode("utf-8"), "utf-8"),
    (codecs.BOM_UTF8 + CHINESE.encode("utf-8"), "utf-8"),
    (CHINESE.encode("utf-16"), None),  # with BOM
    (CHINESE.encode("utf-16-be"), None),
    ("Chapter 1\n\nplain english text here\n".encode("utf-16-le"), "utf-16-le"),  # no BOM
    (CHINESE.encode("gb18030"), "gb18030"),
])
def test_supported_encodings_decode(encoded, encoding):
    text, used = decode_text(encoded, "book.txt")
    assert text.lstrip("\ufeff") in (CHINESE, "Chapter 1\n\nplain english text here\n")
    if encoding:
        assert used == encoding


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b" \n\t \r\n", "only whitespace"),
    (bytes(range(256)) * 4, "binary"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
    ("café au lait".encode("latin-1"), "not UTF-8, UTF-16 or GB18030"),
    ("\u201cHello\u201d she said".encode("cp1252"), "not UTF-8, UTF-16 or GB18030"),
    ("Voilà été déjà".encode("latin-1"), "not UTF-8, UTF-16 or GB18030"),
])
def test_bad_bytes_are_clear_errors(tmp_path, data, message):
    path = write(tmp_path, "book.txt", data)
    with pytest.raises(InputError) as info:
        read_book(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)
    assert "What to do" in str(info.value)


def test_wrong_encoding_error_names_line_and_offset(tmp_path):
    path = write(tmp_path, "book.txt", b"line one\nline two\nna\xefve line three\n")
    with pytest.raises(InputError) as info:
        read_book(path)
    assert info.value.place == "line 3, byte offset 20"


def test_forced_encoding(tmp_path):
    path = write(tmp_path, "book.txt", "café au lait".encode("latin-1"))
    book = read_book(path, ReadOptions(encoding="latin-1"))
    assert book.chapters[0].paragraphs[0].text == "café au lait"


def test_unicode_whitespace_only_file_is_an_error(tmp_path):
    path = write(tmp_path, "book.txt", "\u3000\u00a0\n\u200b\n".encode("utf-8"))
    with pytest.raises(InputError, match="no readable text"):
        read_book(path)


def test_unknown_suffix_and_missing_file(tmp_path):
    with pytest.raises(InputError, match="unsupported manuscript type '.pdf'"):
        read_book(tmp_path / "book.pdf")
    with pytest.raises(InputError, match="file not found"):
        read_book(tmp_path / "missing.txt")


# --- plain text chapters ---------------------------------------------------------------
@pytest.mark.parametrize("line, title", [
    ("Chapter 12", "Chapter 12"),
    ("CHAPTER XII", "CHAPTER XII"),
    ("CHAPTER XII. Loomings.", "CHAPTER XII. Loomings."),
    ("Chapter Twenty-One: The Storm", "Chapter Twenty-One: The Storm"),
    ("第十二章", "第十二章"),
    ("第十二回 风雪山神庙", "第十二回 风雪山神庙"),
    ("第3章：开始", "第3章：开始"),
    ("## The Storm ##", "The Storm"),
    ("Chapter 12 was the longest.", None),
    ("第一回合他就输了。", None),
    ("An ordinary line of prose.", None),
])
def test_heading_lines(line, title):
    assert HeadingMatcher().title(line) == title


def test_configurable_chapter_pattern():
    matcher = HeadingMatcher(r"PART (?P<title>\d+)")
    assert matcher.title("PART 3") == "3"
    assert matcher.title("Chapter 1") is None
    with pytest.raises(ValueError, match="not a valid regular expression"):
        HeadingMatcher("(unclosed")


def test_txt_chapters_in_order_with_titles_and_paragraphs(tmp_path):
    path = write(tmp_path, "story.txt", (
        "A few words before the first chapter.\n\n"
        "CHAPTER I. The Start\n\nIt was a dark night.\nThe rain fell.\n\nA second paragraph.\n\n"
        "Chapter 2\n\nMore text here.\nAnd here. Chapter 3 is mentioned in a sentence.\n"
    ).encode())
    book = read_book(path)
    assert book.title == "story"
    assert [c.title for c in book.chapters] == ["Opening", "CHAPTER I. The Start", "Chapter 2"]  # not the file name
    assert [p.text for p in book.chapters[1].paragraphs] == [
        "CHAPTER I. The Start", "It was a dark night. The rain fell.", "A second paragraph."]
    assert [p.place for p in book.chapters[1].paragraphs] == ["line 3", "line 5", "line 8"]


def test_txt_chinese_one_paragraph_per_line(tmp_path):
    path = write(tmp_path, "书.txt", "第一章 开端\n亲爱的你，\n你好呀。\n第二章 结局\n结束了。\n".encode("gb18030"))
    book = read_book(path)
    assert [c.title for c in book.chapters] == ["第一章 开端", "第二章 结局"]
    assert [p.text for p in book.chapters[0].paragraphs] == ["第一章 开端", "亲爱的你，", "你好呀。"]
    assert book.warnings == ["书.txt: read as gb18030"]


# --- Markdown -----------------------------------------------------------------------------
def test_markdown_headings_are_chapters_and_markup_is_dropped(tmp_path):
    path = write(tmp_path, "book.md", (
        "---\ntitle: \"A Title\"\nauthor: Someone\n---\n\n# Book Heading\n\nOpening words.\n\n"
        "## One\n\nSome **bold** and *em* text with a [link](http://x.org) and `code`.\n\n"
        "- first item\n- second item\n\n> quoted line\n\n```\nprint('skipped')\n```\n\n"
        "### A subheading\n\nMore.\n\nTwo\n---\n\nLast ![img](a.png) words\\*.\n"
    ).encode())
    book = read_book(path)
    assert (book.title, book.author) == ("A Title", "Someone")
    assert [c.title for c in book.chapters] == ["A Title", "One", "Two"]
    assert [p.text for p in book.chapters[1].paragraphs] == [
        "One", "Some bold and em text with a link and code.", "first item", "second item", "quoted line",
        "A subheading", "More."]
    assert [p.text for p in book.chapters[2].paragraphs] == ["Two", "Last words*."]
    assert book.skipped == ["code block at lines 19-21", "the book title heading at line 6"]


def test_sample_book_ships_with_the_project():
    book = read_book(Path(__file__).resolve().parents[2] / "pipeline" / "samples" / "sample_book.md")
    assert book.title == "The Lighthouse Keeper's Ledger"
    assert [c.title for c in book.chapters] == [
        "Chapter 1: The Ledger", "Chapter 2: The Stranger", "Chapter 3: The Light"]
    assert all(len(c.paragraphs) >= 3 for c in book.chapters)


# --- EPUB made in the tests -----------------------------------------------------------------
def _xhtml(body: str, title: str = "Doc") -> str:
    return (f'<?xml version="1.0" encoding="UTF-8"?><html xmlns="http://www.w3.org/1999/xhtml" '
            f'xmlns:epub="http://www.idpf.org/2007/ops"><head><title>{title}</title></head><body>{body}</body></html>')


def make_epub(path: Path, files: dict[str, str], opf: str, container_path: str = "OEBPS/content.opf") -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("mimetype", "application/epub+zip")
        z.writestr("META-INF/container.xml", (
            '<?xml version="1.0"?><container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">'
            f'<rootfiles><rootfile full-path="{container_path}" media-type="application/oebps-package+xml"/>'
            '</rootfiles></container>'))
        z.writestr(container_path, opf)
        for name, content in files.items():
            z.writestr(name, content)
    return path


def test_epub2_with_ncx_guide_and_chapters_split_at_anchors(tmp_path):
    opf = """<?xml version="1.0"?>
<package xmlns="http://www.idpf.org/2007/opf" version="2.0" unique-identifier="id">
 <metadata xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:opf="http://www.idpf.org/2007/opf">
  <dc:title>Two Tales</dc:title><dc:creator opf:role="aut">Ann Author</dc:creator>
  <dc:creator opf:role="edt">Ed Editor</dc:creator><dc:language>zh-CN</dc:language>
 </metadata>
 <manifest>
  <item id="ncx" href="toc.ncx" media-type="application/x-dtbncx+xml"/>
  <item id="cover" href="Text/front.html" media-type="application/xhtml+xml"/>
  <item id="c1" href="Text/part%201.html" media-type="application/xhtml+xml"/>
  <item id="c1b" href="Text/part1-cont.html" media-type="application/xhtml+xml"/>
  <item id="legal" href="Text/legal.html" media-type="application/xhtml+xml"/>
  <item id="img" href="Images/a.jpg" media-type="image/jpeg"/>
 </manifest>
 <spine toc="ncx"><itemref idref="cover"/><itemref idref="c1"/><itemref idref="c1b"/><itemref idref="legal"/></spine>
 <guide><reference type="cover" href="Text/front.html" title="Cover"/>
  <reference type="copyright-page" href="Text/legal.html" title="Legal"/></guide>
</package>"""
    ncx = """<?xml version="1.0"?><ncx xmlns="http://www.daisy.org/z3986/2005/ncx/" version="2005-1"><navMap>
 <navPoint id="n1"><navLabel><text>第一章 山</text></navLabel><content src="Text/part%201.html"/></navPoint>
 <navPoint id="n2"><navLabel><text>第二章 水</text></navLabel><content src="Text/part%201.html#ch2"/></navPoint>
</navMap></ncx>"""
    files = {
        "OEBPS/toc.ncx": ncx,
        "OEBPS/Text/front.html": _xhtml("<p>Cover words</p>"),
        # not well-formed XML (HTML entity), read leniently
        "OEBPS/Text/part 1.html": _xhtml("<h1>第一章 山</h1><p>山很高&nbsp;。</p><h1 id=\"ch2\">第二章 水</h1>"
                                         "<p>水很深<a href=\"#fn1\"><sup>1</sup></a>。</p>"),
        "OEBPS/Text/part1-cont.html": _xhtml("<p>水还在流。</p><aside><p>注：一个脚注。</p></aside>"),
        "OEBPS/Text/legal.html": _xhtml("<p>All rights reserved.</p>"),
    }
    book = read_book(make_epub(tmp_path / "tales.epub", files, opf))
    assert (book.title, book.author, book.language) == ("Two Tales", "Ann Author", "zh")
    assert [c.title for c in book.chapters] == ["第一章 山", "第二章 水"]
    assert [p.text for p in book.chapters[0].paragraphs] == ["第一章 山", "山很高 。"]
    assert [p.text for p in book.chapters[1].paragraphs] == ["第二章 水", "水很深。", "水还在流。", "注：一个脚注。"]
    assert book.skipped == ["OEBPS/Text/front.html (cover)", "OEBPS/Text/legal.html (copyright-page)"]


def _epub3(tmp_path: Path, skip_options: ReadOptions = ReadOptions()):
    opf = """<?xml version="1.0"?>
<package xmlns="http://www.idpf.org/2007/opf" version="3.0" unique-identifier="id">
 <metadata xmlns:dc="http://purl.org/dc/elements/1.1/">
  <dc:title id="t">Sea Notes</dc:title><dc:creator id="a">Bea Writer</dc:creator>
  <meta refines="#a" property="role" scheme="marc:relators">aut</meta><dc:language>en</dc:language>
 </metadata>
 <manifest>
  <item id="nav" href="nav.xhtml" media-type="application/xhtml+xml" properties="nav"/>
  <item id="title" href="title.xhtml" media-type="application/xhtml+xml"/>
  <item id="ch1" href="ch1.xhtml" media-type="application/xhtml+xml"/>
  <item id="ch2" href="ch2.xhtml" media-type="application/xhtml+xml"/>
 </manifest>
 <spine><itemref idref="title"/><itemref idref="ch2"/><itemref idref="ch1"/><itemref idref="nav" linear="no"/></spine>
</package>"""
    nav = _xhtml('<nav epub:type="toc"><ol><li><a href="ch1.xhtml">One: Dawn</a></li>'
                 '<li><a href="ch2.xhtml">Two: Dusk</a></li></ol></nav>'
                 '<nav epub:type="landmarks"><ol><li><a epub:type="bodymatter" href="ch2.xhtml">Start</a></li></ol></nav>')
    files = {
        "OEBPS/nav.xhtml": nav,
        "OEBPS/title.xhtml": _xhtml('<section epub:type="frontmatter titlepage"><h1>Sea Notes</h1></section>'),
        "OEBPS/ch1.xhtml": _xhtml('<section epub:type="bodymatter chapter"><h1>One</h1><p>First <i>light</i>.</p>'
                                  '<p>Line one<br/>line two.<a epub:type="noteref" href="#n">2</a></p>'
                                  '<p>Ruby <ruby>漢<rt>kan</rt></ruby>.</p></section>'),
        "OEBPS/ch2.xhtml": _xhtml('<section epub:type="bodymatter chapter"><h1>Two</h1><p>Evening.</p></section>'),
    }
    return read_book(make_epub(tmp_path / "sea.epub", files, opf), skip_options)


def test_epub3_spine_order_nav_titles_metadata_and_front_matter(tmp_path):
    book = _epub3(tmp_path)
    assert (book.title, book.author, book.language) == ("Sea Notes", "Bea Writer", "en")
    assert [c.title for c in book.chapters] == ["Two: Dusk", "One: Dawn"]  # spine order, not toc order
    assert [p.text for p in book.chapters[1].paragraphs] == ["One", "First light.", "Line one line two.", "Ruby 漢."]
    assert book.skipped == ["OEBPS/title.xhtml (titlepage)", "OEBPS/nav.xhtml (landmarks, non-linear, toc)"]


def test_epub_front_matter_skipping_is_configurable(tmp_path):
    book = _epub3(tmp_path, ReadOptions(skip_kinds=()))
    assert [c.title for c in book.chapters] == ["Sea Notes", "Two: Dusk", "One: Dawn"]
    # a page without a table-of-contents entry or a heading continues the chapter before it
    assert [p.text for p in book.chapters[2].paragraphs][-3:] == ["One: Dawn", "Two: Dusk", "Start"]


def test_broken_epubs_are_clear_errors(tmp_path):
    not_zip = write(tmp_path, "a.epub", b"just text")
    with pytest.raises(InputError, match="not a ZIP archive"):
        read_book(not_zip)
    no_text = make_epub(tmp_path / "b.epub", {"OEBPS/c.xhtml": _xhtml("<p></p>")}, (
        '<package xmlns="http://www.idpf.org/2007/opf" version="3.0"><metadata/><manifest>'
        '<item id="c" href="c.xhtml" media-type="application/xhtml+xml"/></manifest>'
        '<spine><itemref idref="c"/></spine></package>'))
    with pytest.raises(InputError, match="no chapter with text"):
        read_book(no_text)
    broken_opf = make_epub(tmp_path / "c.epub", {}, "<package><metadata>")
    with pytest.raises(InputError, match="broken XML") as info:
        read_book(broken_opf)
    assert "OEBPS/content.opf" in info.value.place
