"""The stages of a book, one folder each: `reading` (manuscript in, chapters out), `text`
(chapters in, a plan of segments out), `narration` (plan segments in, stored segments out),
`finishing` (stored segments in, chapter files and the M4B out); `index` and `storage` for
what a run keeps, `quality` and `dataset` beside them. The command is `python -m pipeline.run`.
"""
