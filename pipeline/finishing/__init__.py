"""Finishing: stored segments in, chapter files, the M4B and subtitles out.

A chapter's segments are decoded and joined (`chapter_audio`, `stitch`), leveled (`loudness`),
written and checked (`export`, `deliver`, `tags`, `naming`), subtitled (`subtitles`); `finish`
ties these together per chapter and for the book.
"""
