"""No word lost or invented: every letter and digit of a book is in a segment or in a known skip."""
from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from pipeline.reading import ReadOptions, read_book
from pipeline.reading.book import speakable_count
from pipeline.text.check import dropped_words
from pipeline.text.keys import KeyInputs
from pipeline.text.plan import PlanOptions, build_plan, coverage

KEYS = KeyInputs(voice_id="v", model_id="m", model_revision="r", decoding={},
                 carryover_bound_frames=250)

# One short chapter per language: (code, heading, text).
BOOKS = {
    "en": ("Chapter 1", "It was 5:30 p.m. on May 3, 1851. Mr. Smith paid $3.50 for 2 kg of fish—fresh!"),
    "zh": ("第一章 开端", "他花了￥73.5元买了3本书。“你好！”她说，然后走了……今天是2024年3月31日。"),
    "ja": ("第一章", "「へえ」\n\n「なるほど」と彼は言った。りんごを3個、1,000円で買った。"),
    "ko": ("제1장", "안녕하세요. 사과 3개를 샀습니다! 오늘은 2024년입니다."),
    "de": ("Kapitel 1", "Der Hund läuft schnell über die Straße. Es kostet 12,50 € und dauert 3 Stunden."),
    "fr": ("Chapitre 1", "Le chat est sur la table, dit-il. Il y a 1 234 habitants et 25 % de pluie."),
    "es": ("Capítulo 1", "¿Dónde está la biblioteca? ¡Está allí! Cuesta 20 € y son las 14:30."),
}


def assert_nothing_lost(book, plan) -> None:
    account = coverage(plan)
    assert account["unaccounted"] == 0, account
    assert account["source"] >= account["read"] > 0
    assert not [w for w in plan.warnings if "no segment" in w or "leaves out words" in w
                or "neither read nor left out" in w], plan.warnings
    for s in plan.segments:
        assert dropped_words(s.text, s.model_text) == [], (s.text, s.model_text)
    read = sum(speakable_count(s.text) for s in plan.segments)
    assert read == account["read"]  # nothing with letters was left out as "nothing to say"


def plan_of(path: Path, **read_options):
    book = read_book(path, ReadOptions(**read_options))
    return book, build_plan(book, PlanOptions(), None, KEYS)


@pytest.mark.parametrize("language", sorted(BOOKS))
def test_text_books_in_each_language(tmp_path, language):
    heading, body = BOOKS[language]
    path = tmp_path / f"book-{language}.txt"
    path.write_text(f"Opening line of the book.\n\n{heading}\n\n{body}\n", encoding="utf-8")
    book, plan = plan_of(path)
    assert_nothing_lost(book, plan)
    body_languages = {s.language for s in plan.segments if s.chapter_index == 1 and s.text != heading}
    assert body_languages == {language}


@pytest.mark.parametrize("language", sorted(BOOKS))
def test_markdown_books_in_each_language(tmp_path, language):
    heading, body = BOOKS[language]
    path = tmp_path / f"book-{language}.md"
    path.write_text(f"---\ntitle: T\n---\n\n# {heading}\n\n{body}\n\nSee [the site](https://example.com).\n\n"
                    "```python\nprint('not read')\n```\n", encoding="utf-8")
    book, plan = plan_of(path)
    assert_nothing_lost(book, plan)
    skipped = coverage(plan)
    assert skipped["skipped: code"] == speakable_count("python print not read")
    assert skipped["skipped: Markdown markup"] == speakable_count("https://example.com")
    assert skipped["skipped: front matter"] == speakable_count("title: T")


def _xhtml(body: str) -> str:
    return ('<?xml version="1.0" encoding="UTF-8"?><html xmlns="http://www.w3.org/1999/xhtml" '
            f'xmlns:epub="http://www.idpf.org/2007/ops"><head><title>Page</title></head><body>{body}</body></html>')


def make_epub(path: Path, pages: dict[str, str], language: str = "en") -> Path:
    items = "".join(f'<item id="p{i}" href="{name}" media-type="application/xhtml+xml"/>'
                    for i, name in enumerate(pages))
    spine = "".join(f'<itemref idref="p{i}"/>' for i in range(len(pages)))
    opf = ('<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" version="3.0">'
           '<metadata xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>Test</dc:title>'
           f'<dc:language>{language}</dc:language></metadata><manifest>{items}</manifest>'
           f'<spine>{spine}</spine></package>')
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("mimetype", "application/epub+zip")
        z.writestr("META-INF/container.xml", (
            '<?xml version="1.0"?><container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">'
            '<rootfiles><rootfile full-path="OPS/content.opf" media-type="application/oebps-package+xml"/>'
            '</rootfiles></container>'))
        z.writestr("OPS/content.opf", opf)
        for name, body in pages.items():
            z.writestr(f"OPS/{name}", _xhtml(body))
    return path


PAGES = {
    # front matter without epub:type, named only by what it holds
    "p1.xhtml": "<p>Copyright © 2024 Someone. All rights reserved.</p><p>ISBN 978-3-16-148410-0</p>",
    "p2.xhtml": "<h1>Contents</h1><p><a href='p4.xhtml'>The Road</a></p><p><a href='p5.xhtml'>The Code</a></p>"
                "<p><a href='p6.xhtml'>The End</a></p>",
    "p3.xhtml": "<p>For my mother.</p>",
    "p4.xhtml": "<h1>The Road</h1><p>They went marching along <span epub:type='pagebreak' id='page173' "
                "title='173'>173</span> the high road.</p><p>Page <span role='doc-pagebreak'>174</span>turned. "
                "He read <ruby>漢字<rt>かんじ</rt></ruby> aloud.<a epub:type='noteref' href='#n1'>1</a></p>",
    "p5.xhtml": "<h1>The Code</h1><p>Write this:</p><pre><code>&lt;html xmlns:epub=\"http://www.idpf.org/2007/ops\"&gt;"
                "</code></pre><p>Then stop.</p>",
    "p6.xhtml": "<h1>The End</h1><p>It ended.</p>",
}


def test_epub_page_breaks_code_and_unnamed_front_matter(tmp_path):
    book, plan = plan_of(make_epub(tmp_path / "b.epub", PAGES))
    texts = [s.text for s in plan.segments]
    assert "They went marching along the high road." in texts  # no "one hundred seventy-three"
    assert not any("173" in t or "174" in t or "xmlns" in t or "idpf" in t for t in texts)
    assert "Write this:" in texts and "Then stop." in texts
    assert [c.title for c in book.chapters] == ["Page", "The Road", "The Code", "The End"]  # a dedication is read
    assert "OPS/p1.xhtml (copyright-page)" in book.skipped and "OPS/p2.xhtml (toc)" in book.skipped
    assert "OPS/p4.xhtml (page-break markers)" in book.skipped
    assert "OPS/p5.xhtml (code listings)" in book.skipped
    account = coverage(plan)
    assert account["skipped: page-break markers"] == 6
    assert account["skipped: ruby readings"] == 3
    assert account["skipped: footnote marks"] == 1
    assert account["skipped: code listings"] == speakable_count('html xmlns:epub="http://www.idpf.org/2007/ops"')
    assert_nothing_lost(book, plan)


def test_epub_page_numbers_and_code_can_be_kept(tmp_path):
    book, plan = plan_of(make_epub(tmp_path / "b.epub", PAGES), keep_page_numbers=True, keep_code=True)
    texts = " ".join(s.text for s in plan.segments)
    assert "along 173 the high road" in texts and "xmlns" in texts
    assert "page-break markers" not in coverage(plan) and "skipped: code listings" not in coverage(plan)
    assert_nothing_lost(book, plan)


def test_a_lost_word_is_reported_with_its_place(tmp_path):
    """The check is real: a reader that drops text is caught (here, a custom heading pattern)."""
    path = tmp_path / "book.txt"
    path.write_text("PART 3\n\nThe story.\n", encoding="utf-8")
    book = read_book(path, ReadOptions(chapter_pattern=r"PART (?P<title>\d+)"))
    plan = build_plan(book, PlanOptions(), None, KEYS)
    assert coverage(plan)["unaccounted"] == 4  # "PART"
    assert any("4 of the source's" in w and "neither read nor left out" in w for w in plan.warnings)


def test_moby_dick_every_letter_accounted_for(shared_data):
    book, plan = plan_of(shared_data / "books" / "moby-dick.epub")
    account = coverage(plan)
    assert account["read"] > 900_000
    assert_nothing_lost(book, plan)
