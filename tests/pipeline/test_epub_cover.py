from pipeline.reading import ReadOptions, read_book


def test_epub_cover_image_is_read_for_the_m4b(shared_data):
    book = read_book(shared_data / "books" / "moby-dick.epub", ReadOptions())
    assert book.cover is not None and book.cover.mime == "image/jpeg"
    assert book.cover.data[:3] == b"\xff\xd8\xff"  # a JPEG stream


def test_markdown_has_no_cover(tmp_path):
    path = tmp_path / "b.md"
    path.write_text("# T\n\nSome text.\n", encoding="utf-8")
    assert read_book(path, ReadOptions()).cover is None
