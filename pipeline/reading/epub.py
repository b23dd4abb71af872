"""EPUB 2 and 3 manuscripts.

Chapters follow the spine. Titles come from the EPUB 3 navigation document, or
the EPUB 2 NCX, or the chapter's first heading. Book title, author and language
come from the package metadata. Pages of the kinds in `ReadOptions.skip_kinds`
(cover, title page, table of contents, copyright page, ...) are left out; a
page's kinds come from the landmarks or guide, the page's own epub:type, its
spine entry (linear="no"), its file name and, for a page that none of these
names, its content (a short page with a copyright notice, a page of links to
the other pages, a short dedication).

Inside a page, page-break markers (printed page numbers) and code listings are
left out unless `ReadOptions.keep_page_numbers` / `keep_code` say otherwise, as
are ruby readings, footnote marks, images and formulas. Every letter and digit
of a page's content is accounted for: read, or counted under the known skip that
left it out (`Book.skipped_characters`), which the plan checks.

A spine document that the table of contents points into at several anchors is
split into several chapters there; one without an entry and without a heading
continues the chapter before it.
"""
from __future__ import annotations

import posixpath
import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urldefrag

import lxml.etree as etree  # the compiled module by its own name: `from lxml import etree` hides it from pyright
from lxml import html

from pipeline.errors import InputError
from pipeline.reading.book import Book, Chapter, Cover, Paragraph, ReadOptions, count_skip, speakable_count
from pipeline.reading.clean import clean_paragraph

_NS = {
    "opf": "http://www.idpf.org/2007/opf",
    "dc": "http://purl.org/dc/elements/1.1/",
    "ncx": "http://www.daisy.org/z3986/2005/ncx/",
    "container": "urn:oasis:names:tc:opendocument:xmlns:container",
}
_EPUB_TYPE = "{http://www.idpf.org/2007/ops}type"
_XHTML_TYPES = ("application/xhtml+xml", "text/html", "application/x-dtbook+xml")
_BLOCK_TAGS = frozenset(
    "p div h1 h2 h3 h4 h5 h6 li ul ol dl dt dd blockquote section article header footer aside nav pre "
    "table tr caption figure figcaption hr address center main body".split()
)
_HEADING_TAGS = frozenset("h1 h2 h3".split())
_NOT_CONTENT_TAGS = frozenset("head script style title noscript".split())
_SKIPPED_TAGS = {"rt": "ruby readings", "rp": "ruby readings", "svg": "images and formulas",
                 "math": "images and formulas"}
_CODE_CLASSES = frozenset("programlisting listing code-block codeblock sourcecode source-code".split())
_COPYRIGHT_RE = re.compile(
    r"©|all rights reserved|\bISBN\b|copyright\s*(?:©\s*)?\d{4}|版权所有|版權所有|著作権|저작권", re.IGNORECASE)
_DEDICATION_RE = re.compile(r"^(?:for|to|dedicated to|in memory of|für|pour|à|para|献给|謹以|谨以|致)\b", re.IGNORECASE)
_CONTENT_KIND_MAX_CHARS = {"copyright-page": 3000, "dedication": 300}
_NOTE_MARK_RE = re.compile(r"^\[?(?:\d{1,3}|[*†‡§])\]?$")
_FILE_NAME_KINDS = (
    (re.compile(r"^cover(?:[-_].*)?$", re.IGNORECASE), "cover"),
    (re.compile(r"^(?:toc|contents|nav)(?:[-_].*)?$", re.IGNORECASE), "toc"),
    (re.compile(r"^title[-_]?page(?:[-_].*)?$", re.IGNORECASE), "titlepage"),
    (re.compile(r"^copyright(?:[-_].*)?$", re.IGNORECASE), "copyright-page"),
)
_SAFE_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)


@dataclass
class _Item:
    path: str  # zip member name
    media_type: str
    properties: str


@dataclass
class _TextBlock:
    text: str
    ids: tuple[str, ...]  # anchors that fall in this paragraph
    heading: bool


def read_epub(path: Path, options: ReadOptions) -> Book:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise InputError(path, "", f"not an EPUB: the file is not a ZIP archive ({e})",
                         "give a valid .epub file (EPUB 2 or 3)") from None
    with archive:
        _check_archive(archive, path, options)
        return _EpubReader(_CheckedArchive(archive, path), path, options).read()


# Font obfuscation (IDPF, Adobe) is not DRM: the text stays readable.
_FONT_OBFUSCATION = {"http://www.idpf.org/2008/embedding", "http://ns.adobe.com/pdf/enc#RC"}
_DRM_FILES = {"meta-inf/rights.xml": "Adobe ADEPT", "meta-inf/sinf.xml": "Apple FairPlay",
              "meta-inf/license.lcpl": "Readium LCP"}
_RATIO_FLOOR = 1 << 20  # members that inflate to less than this are never called a bomb
_DRM_HINT = "give a DRM-free copy of the book (publishers and shops sell DRM-free EPUBs), or its plain text"


def _check_archive(archive: zipfile.ZipFile, path: Path, options: ReadOptions) -> None:
    """Before any member is inflated: the sizes are bounded and the book is not DRM-encrypted."""
    infos = archive.infolist()
    total = sum(i.file_size for i in infos)
    limit_mb = options.max_archive_bytes / 2**20
    if total > options.max_archive_bytes:
        raise InputError(path, "", f"the archive would inflate to {total / 2**20:.0f} MB, over the "
                         f"{limit_mb:g} MB limit (a damaged file or a zip bomb)",
                         f"check the file; if it is a real book this large, raise plan.max_archive_mb (now {limit_mb:g})")
    for info in infos:
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > _RATIO_FLOOR and ratio > options.max_compression_ratio:
            raise InputError(path, info.filename, f"this member is compressed {ratio:.0f} to 1 "
                             f"({info.file_size / 2**20:.0f} MB from {info.compress_size / 2**10:.0f} KB), over the "
                             f"limit of {options.max_compression_ratio:g} (a zip bomb)",
                             "check the file; if it is a real book, raise plan.max_compression_ratio")
    names = {i.filename.lower(): i.filename for i in infos}
    for member, scheme in _DRM_FILES.items():
        if member in names:
            raise InputError(path, names[member], f"the book is DRM-protected ({scheme}); its text cannot be read",
                             _DRM_HINT)
    if "meta-inf/encryption.xml" in names:
        try:
            root = etree.fromstring(archive.read(names["meta-inf/encryption.xml"]), _SAFE_PARSER)
        except (etree.XMLSyntaxError, zipfile.BadZipFile, zlib.error, EOFError):
            raise InputError(path, "META-INF/encryption.xml", "the encryption manifest is unreadable", _DRM_HINT) from None
        encrypted = []
        for data in root.iter("{http://www.w3.org/2001/04/xmlenc#}EncryptedData"):
            method = data.find("{http://www.w3.org/2001/04/xmlenc#}EncryptionMethod")
            algorithm = method.get("Algorithm", "") if method is not None else ""
            reference = data.find(".//{http://www.w3.org/2001/04/xmlenc#}CipherReference")
            uri = reference.get("URI", "") if reference is not None else ""
            if algorithm not in _FONT_OBFUSCATION:
                encrypted.append(uri or "(unnamed)")
        if encrypted:
            raise InputError(path, "META-INF/encryption.xml",
                             f"the book is DRM-encrypted ({len(encrypted)} file(s), e.g. {encrypted[0]}); its text "
                             "cannot be read", _DRM_HINT)


class _CheckedArchive:
    """The archive as the reader uses it: a damaged member (bad CRC, truncated data) is an InputError
    that names it."""

    def __init__(self, archive: zipfile.ZipFile, path: Path) -> None:
        self._archive = archive
        self._path = path

    def namelist(self) -> list[str]:
        return self._archive.namelist()

    def read(self, name: str) -> bytes:
        try:
            return self._archive.read(name)
        except KeyError:
            raise
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as error:
            raise InputError(self._path, name, f"this part of the archive is damaged ({error})",
                             "get a fresh copy of the EPUB, or repair it by re-exporting it from its editor") from None


class _EpubReader:
    def __init__(self, archive: _CheckedArchive, path: Path, options: ReadOptions) -> None:
        self.archive = archive
        self.path = path
        self.options = options
        self.names = {name.lower(): name for name in archive.namelist()}
        self.skipped: list[str] = []
        self.warnings: list[str] = []
        self.source_characters = 0
        self.skipped_characters: dict[str, int] = {}

    # --- package -------------------------------------------------------------
    def read(self) -> Book:
        opf_path = self._opf_path()
        opf = self._xml(opf_path)
        base = posixpath.dirname(opf_path)
        manifest = {
            item.get("id"): _Item(self._resolve(base, item.get("href", "")), item.get("media-type", ""),
                                  item.get("properties", ""))
            for item in opf.iterfind("opf:manifest/opf:item", _NS)
        }
        spine = opf.find("opf:spine", _NS)
        if spine is None or not len(spine):
            raise InputError(self.path, opf_path, "the package has no spine (reading order)",
                             "repair the EPUB, e.g. by re-exporting it from its editor")
        titles, kinds = self._navigation(opf_path, opf, manifest, spine)
        chapters = self._chapters(spine, manifest, titles, kinds)
        if not chapters:
            raise InputError(self.path, opf_path, "no chapter with text was found",
                             "check plan.skip_front_matter, or give an EPUB whose chapters hold text")
        title = _text(opf.find("opf:metadata/dc:title", _NS)) or self.path.stem
        language = _text(opf.find("opf:metadata/dc:language", _NS)).split("-")[0].lower() or None
        return Book(title=title, author=self._author(opf), language=language, source=str(self.path),
                    chapters=chapters, skipped=self.skipped, warnings=self.warnings,
                    cover=self._cover(opf, manifest), source_characters=self.source_characters,
                    skipped_characters=self.skipped_characters)

    def _cover(self, opf, manifest: dict) -> Cover | None:
        """EPUB 3: the manifest item with the cover-image property; EPUB 2: <meta name="cover">."""
        item = next((i for i in manifest.values() if "cover-image" in i.properties.split()), None)
        if item is None:
            meta = opf.find("opf:metadata/opf:meta[@name='cover']", _NS)
            item = manifest.get(meta.get("content")) if meta is not None else None
        if item is None or not item.media_type.startswith("image/"):
            return None
        name = self.names.get(item.path.lower())
        if name is None:
            self.warnings.append(f"cover image {item.path} is missing from the archive; the M4B gets no cover")
            return None
        return Cover(self.archive.read(name), item.media_type)

    def _opf_path(self) -> str:
        try:
            container = self._xml("META-INF/container.xml")
            rootfile = container.find(".//container:rootfile", _NS)
            if rootfile is not None and rootfile.get("full-path"):
                return self._member(unquote(rootfile.get("full-path")), "META-INF/container.xml")
        except InputError:
            pass
        for name in self.archive.namelist():
            if name.lower().endswith(".opf"):
                return name
        raise InputError(self.path, "META-INF/container.xml", "no package document (.opf) found",
                         "repair the EPUB, e.g. by re-exporting it from its editor")

    def _author(self, opf: etree._Element) -> str:
        creators = opf.findall("opf:metadata/dc:creator", _NS)
        roles = {m.get("refines", "").lstrip("#"): _text(m)
                 for m in opf.iterfind("opf:metadata/opf:meta[@property='role']", _NS)}
        authors = []
        for creator in creators:
            role = creator.get(f"{{{_NS['opf']}}}role") or roles.get(creator.get("id", ""), "aut")
            if role == "aut":
                authors.append(_text(creator))
        return ", ".join(a for a in authors if a) or ", ".join(_text(c) for c in creators if _text(c))

    # --- table of contents, landmarks, guide ------------------------------------
    def _navigation(self, opf_path: str, opf, manifest, spine) -> tuple[dict[str, list[tuple[str, str]]], dict[str, set[str]]]:
        """Titles per document (fragment, title) in reading order, and page kinds per document."""
        titles: dict[str, list[tuple[str, str]]] = {}
        kinds: dict[str, set[str]] = {}
        nav = next((i for i in manifest.values() if "nav" in i.properties.split()), None)
        if nav is not None and nav.path in self.names.values():
            doc = self._document(nav.path)
            for nav_el in doc.iter("{*}nav"):
                types = _epub_types(nav_el)
                for a in nav_el.iter("{*}a"):
                    href = a.get("href")
                    if not href:
                        continue
                    target, fragment = self._target(nav.path, href)
                    if "toc" in types:
                        titles.setdefault(target, []).append((fragment, clean_paragraph(" ".join(a.itertext()))))
                    elif "landmarks" in types and not fragment:
                        kinds.setdefault(target, set()).update(_epub_types(a))
            kinds.setdefault(nav.path, set()).add("toc")
        ncx = manifest.get(spine.get("toc", "")) or next(
            (i for i in manifest.values() if i.media_type == "application/x-dtbncx+xml"), None)
        if not titles and ncx is not None and ncx.path in self.names.values():
            for point in self._xml(ncx.path).iterfind(".//ncx:navPoint", _NS):
                content = point.find("ncx:content", _NS)
                if content is None or not content.get("src"):
                    continue
                target, fragment = self._target(ncx.path, content.get("src"))
                label = clean_paragraph(_text(point.find("ncx:navLabel/ncx:text", _NS)))
                titles.setdefault(target, []).append((fragment, label))
        for reference in opf.iterfind("opf:guide/opf:reference", _NS):
            if reference.get("href") and reference.get("type"):
                target, fragment = self._target(opf_path, reference.get("href"))
                if not fragment:
                    kinds.setdefault(target, set()).add(reference.get("type").lower())
        return titles, kinds

    # --- chapters -----------------------------------------------------------------
    def _chapters(self, spine, manifest, titles, kinds) -> list[Chapter]:
        chapters: list[Chapter] = []
        for itemref in spine.iterfind("opf:itemref", _NS):
            item = manifest.get(itemref.get("idref"))
            if item is None:
                self.warnings.append(f"spine entry {itemref.get('idref')!r} is not in the manifest; left out")
                continue
            if item.media_type not in _XHTML_TYPES:
                self.skipped.append(f"{item.path} ({item.media_type})")
                continue
            if item.path not in self.names.values():
                self.warnings.append(f"{item.path} is listed in the spine but missing from the archive; left out")
                continue
            doc = self._document(item.path)
            page_kinds = self._page_kinds(item, itemref, doc, kinds)
            entries = titles.get(item.path, [])
            body = next(doc.iter("{*}body"), doc)
            try:
                content = _content_text(body)
                self.source_characters += speakable_count(content)
                counts: dict[str, int] = {}
                blocks = _text_blocks(doc, {fragment for fragment, _ in entries if fragment}, self.options, counts)
            except RecursionError:
                raise InputError(self.path, item.path, "the page nests its elements too deeply to read",
                                 "repair the page, e.g. by re-exporting the EPUB from its editor") from None
            if not page_kinds:
                page_kinds = _content_kinds(blocks, body, item.path)
            left_out = sorted(page_kinds.intersection(self.options.skip_kinds))
            if left_out:
                self.skipped.append(f"{item.path} ({', '.join(left_out)})")
                count_skip(self.skipped_characters, "pages left out by kind", content)
                continue
            for reason, n in counts.items():
                self.skipped_characters[reason] = self.skipped_characters.get(reason, 0) + n
                if reason in ("page-break markers", "code listings"):
                    self.skipped.append(f"{item.path} ({reason})")
            if not blocks:
                self.skipped.append(f"{item.path} (no text)")
                continue
            self._add_document(chapters, item.path, doc, blocks, entries)
        return chapters

    def _page_kinds(self, item: _Item, itemref, doc, kinds: dict[str, set[str]]) -> set[str]:
        found = set(kinds.get(item.path, ()))
        if itemref.get("linear", "yes").strip().lower() == "no":
            found.add("non-linear")
        if "nav" in item.properties.split():
            found.add("toc")
        body = next(doc.iter("{*}body"), None)
        if body is not None:
            found.update(_epub_types(body))
            for child in body:
                if isinstance(child.tag, str):
                    found.update(_epub_types(child))
        stem = posixpath.splitext(posixpath.basename(item.path))[0]
        for pattern, kind in _FILE_NAME_KINDS:
            if pattern.match(stem):
                found.add(kind)
        return found

    def _add_document(self, chapters: list[Chapter], path: str, doc, blocks: list[_TextBlock],
                      entries: list[tuple[str, str]]) -> None:
        starts = {fragment: title for fragment, title in entries[1:] if fragment}
        if entries:
            current = Chapter(entries[0][1] or _first_heading(blocks) or posixpath.basename(path), [], path)
        elif blocks[0].heading or not chapters:
            current = Chapter(_first_heading(blocks) or _document_title(doc) or posixpath.basename(path), [], path)
        else:
            current = chapters.pop()  # no entry, no heading: the previous chapter goes on
        seen: set[str] = set()
        for block in blocks:
            new = [starts[i] for i in block.ids if i in starts and i not in seen]
            seen.update(block.ids)
            if new and current.paragraphs:
                chapters.append(current)
                current = Chapter(new[0], [], f"{path}#{block.ids[0]}")
            current.paragraphs.append(Paragraph(block.text, path))
        chapters.append(current)
        missing = [f for f in starts if f not in seen]
        if missing:
            self.warnings.append(f"{path}: table-of-contents anchors not found: {', '.join(missing)}")

    # --- archive access -----------------------------------------------------------
    def _member(self, name: str, referrer: str) -> str:
        found = self.names.get(name.lower())
        if found is None:
            raise InputError(self.path, referrer, f"{name} is referenced but missing from the archive",
                             "repair the EPUB, e.g. by re-exporting it from its editor")
        return found

    def _resolve(self, base: str, href: str) -> str:
        target = posixpath.normpath(posixpath.join(base, unquote(urldefrag(href)[0])))
        return self.names.get(target.lower(), target)

    def _target(self, source: str, href: str) -> tuple[str, str]:
        """The archive member and fragment an href in the file `source` points to."""
        url, fragment = urldefrag(href)
        target = self._resolve(posixpath.dirname(source), url) if url else source
        return target, unquote(fragment)

    def _xml(self, name: str) -> etree._Element:
        try:
            data = self.archive.read(name)
        except KeyError:
            raise InputError(self.path, name, "file missing from the archive", "repair the EPUB") from None
        try:
            return etree.fromstring(data, _SAFE_PARSER)
        except etree.XMLSyntaxError as e:
            raise InputError(self.path, f"{name}, line {e.lineno}", f"broken XML: {e.msg}",
                             "repair the EPUB, e.g. by re-exporting it from its editor") from None

    def _document(self, name: str) -> etree._Element:
        """An XHTML document; HTML that is not well-formed XML (named entities, ...) is read leniently."""
        data = self.archive.read(name)
        try:
            return etree.fromstring(data, _SAFE_PARSER)
        except etree.XMLSyntaxError:
            try:
                return html.document_fromstring(data)
            except (etree.ParserError, ValueError) as e:
                raise InputError(self.path, name, f"unreadable page: {e}",
                                 "repair the EPUB, e.g. by re-exporting it from its editor") from None


def _text_blocks(doc: etree._Element, anchors: set[str], options: ReadOptions = ReadOptions(),
                 counts: dict[str, int] | None = None) -> list[_TextBlock]:
    """The paragraphs of an XHTML document, in order, with the wanted anchors each holds.

    `counts` gets the letters and digits of what is left out, by reason.
    """
    counts = counts if counts is not None else {}
    blocks: list[_TextBlock] = []
    buffer: list[str] = []
    ids: list[str] = []
    heading = [False]

    def flush() -> None:
        text = clean_paragraph("".join(buffer))
        if text:
            blocks.append(_TextBlock(text, tuple(ids), heading[0]))
            ids.clear()
        buffer.clear()
        heading[0] = False

    def walk(el: etree._Element) -> None:
        if not isinstance(el.tag, str):  # comment or processing instruction
            buffer.append(el.tail or "")
            return
        tag = etree.QName(el).localname.lower()
        reason = _skip_reason(el, tag, options)
        if reason is not None:
            if tag in _BLOCK_TAGS:
                flush()
            count_skip(counts, reason, _content_text(el, tail=False))
            buffer.append(el.tail or "")
            return
        block = tag in _BLOCK_TAGS
        if block:
            flush()
        if el.get("id") in anchors:
            ids.append(el.get("id"))
        if tag in _HEADING_TAGS:
            heading[0] = True
        if tag == "br":
            buffer.append("\n")
        buffer.append(el.text or "")
        for child in el:
            walk(child)
        if block:
            flush()
        buffer.append(el.tail or "")

    body = next(doc.iter("{*}body"), doc)
    walk(body)
    flush()
    return blocks


def _skip_reason(el: etree._Element, tag: str, options: ReadOptions) -> str | None:
    """Why an element's text is left out, or None to read it."""
    if tag in _NOT_CONTENT_TAGS:
        return "not content"  # never counted: _content_text leaves these out too
    if tag in _SKIPPED_TAGS:
        return _SKIPPED_TAGS[tag]
    if _is_note_reference(el, tag):
        return "footnote marks"
    types = _epub_types(el)
    if not options.keep_page_numbers and ("pagebreak" in types or el.get("role") == "doc-pagebreak"):
        return "page-break markers"
    if not options.keep_code and (tag == "pre" or "code" in types
                                  or _CODE_CLASSES.intersection(el.get("class", "").lower().split())):
        return "code listings"
    return None


def _content_text(el: etree._Element, tail: bool = False) -> str:
    """The text an element holds, less what is never content (scripts, styles, the head)."""
    parts: list[str] = []

    def walk(node: etree._Element) -> None:
        if isinstance(node.tag, str) and etree.QName(node).localname.lower() not in _NOT_CONTENT_TAGS:
            parts.append(node.text or "")
            for child in node:
                walk(child)
        if node is not el or tail:
            parts.append(node.tail or "")

    walk(el)
    return "".join(parts)


def _content_kinds(blocks: list[_TextBlock], body: etree._Element, path: str) -> set[str]:
    """Kinds of a page that nothing else named, from what it holds."""
    text = " ".join(b.text for b in blocks)
    if not text:
        return set()
    if len(text) <= _CONTENT_KIND_MAX_CHARS["copyright-page"] and _COPYRIGHT_RE.search(text):
        return {"copyright-page"}
    links = [a for a in body.iter("{*}a") if a.get("href") and not a.get("href").startswith(("#", "http", "mailto"))]
    linked = sum(speakable_count("".join(a.itertext())) for a in links)
    if len(links) >= 3 and linked >= 0.6 * speakable_count(text):
        return {"toc"}
    if len(text) <= _CONTENT_KIND_MAX_CHARS["dedication"] and len(blocks) <= 4 and _DEDICATION_RE.match(text):
        return {"dedication"}
    return set()


def _is_note_reference(el: etree._Element, tag: str) -> bool:
    """A footnote marker in the running text (its note's text is kept where the note is)."""
    if "noteref" in _epub_types(el):
        return True
    if tag not in ("a", "sup"):
        return False
    linked = tag == "a" and "#" in el.get("href", "") or tag == "sup" and el.find(".//{*}a") is not None
    return linked and bool(_NOTE_MARK_RE.match("".join(el.itertext()).strip()))


def _epub_types(el: etree._Element) -> set[str]:
    value = el.get(_EPUB_TYPE) or el.get("epub:type") or ""
    return set(value.lower().split())


def _first_heading(blocks: list[_TextBlock]) -> str:
    return next((b.text for b in blocks if b.heading), "")


def _document_title(doc: etree._Element) -> str:
    return clean_paragraph(_text(next(doc.iter("{*}title"), None)))


def _text(el: etree._Element | None) -> str:
    return "".join(el.itertext()).strip() if el is not None else ""
