"""Text: a book's chapters in, a plan of segments out.

Spoken forms per language (`normalize`, `english`, `chinese`, `intl`), inline controls
(`inline`), the lexicon (`lexicon`), the checks that normalization drops and invents no words
(`check`), cutting into segments (`segment`), and the plan (`plan`): each segment's model
text, key (`keys`) and estimates.
"""
