"""The narration plan: a book cut into segments, each with the text the model will read and its key.

One row per segment: where it sits (chapter, segment index, paragraph), its clean
text, the model text (lexicon applied, spoken forms), the boundary after it, the explicit
pause after it, estimated frames, language, lexicon entries that touched it,
and its key.

Pause markers (``[pause 1.5s]``) never reach the model: a marker ends a
segment, and its seconds (adjacent markers add up) become the segment's
``pause_s``, the silence finishing inserts after it instead of the boundary
kind's default. Estimated frames are speech only, and the key covers the model
text, not the pause (pauses are applied at finishing). Markers before anything
is said in a paragraph or chapter go to the segment before them (the previous
chapter's last one at a chapter's start); at the start of the book they are
dropped with a warning.

Segment boundaries never depend on the lexicon (segments are packed by the
lexicon-free duration estimate), so a lexicon change only changes the model
text of the segments it touches and, through the carryover, the key of the
segment after each of them. The lexicon applies within a segment's units
(sentences, or pieces of an over-long sentence), so a term is not matched
across such a cut.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from moss_model.codec.rates import DEFAULT_FRAME_RATE
from pipeline.errors import InputError
from pipeline.reading.book import Book, Chapter, Paragraph, ReadOptions, speakable_count
from pipeline.reading.script import LANGUAGES, detect_language, language_name
from pipeline.text.check import dropped_words, invented_words
from pipeline.text.inline import count_pinyin_syllables, split_controls
from pipeline.text.keys import KeyInputs
from pipeline.text.lexicon import POLYPHONE_PREFIX, Lexicon
from pipeline.text.normalize import speak_pieces
from pipeline.text.segment import (
    BOUNDARY_KINDS, Cut, SpeakingRates, UnsplittableError, estimate_seconds, is_speakable,
    seconds_to_frames, segment_paragraph,
)

PLAN_VERSION = 2  # 2: pause markers cut segments and become pause_s
PLAN_FILE = "plan.parquet"
METADATA_KEY = b"moss_narrator.plan"

PLAN_SCHEMA = pa.schema([
    pa.field("book", pa.string(), nullable=False),
    pa.field("chapter_index", pa.int32(), nullable=False),
    pa.field("chapter_title", pa.string(), nullable=False),
    pa.field("segment_index", pa.int32(), nullable=False),
    pa.field("paragraph_index", pa.int32(), nullable=False),
    pa.field("run_index", pa.int32(), nullable=False),
    pa.field("text", pa.string(), nullable=False),
    pa.field("model_text", pa.string(), nullable=False),
    pa.field("boundary", pa.string(), nullable=False),
    pa.field("pause_s", pa.float64(), nullable=True),
    pa.field("est_frames", pa.int32(), nullable=False),
    pa.field("language", pa.string(), nullable=False),
    pa.field("lexicon_entries", pa.list_(pa.string()), nullable=False),
    pa.field("key", pa.string(), nullable=False),
])


@dataclass(frozen=True)
class PlanOptions:
    target_seconds: float = 18.0
    max_seconds: float = 30.0
    # A chapter longer than this is narrated as several runs, cut at paragraph boundaries: each
    # run starts again from the voice, so runs narrate in parallel and the longest chapter does
    # not set the book's critical path.
    max_run_seconds: float = 240.0
    rates: SpeakingRates = SpeakingRates()
    language: str = "auto"  # "auto" (per segment: script, then a detector) or one of LANGUAGES for all
    read: ReadOptions = ReadOptions()
    polyphones: str = ""  # Chinese characters to render as Pinyin in context (pypinyin)

    def __post_init__(self) -> None:
        if not 0 < self.target_seconds <= self.max_seconds:
            raise ValueError(f"need 0 < target_seconds <= max_seconds, got {self.target_seconds} and {self.max_seconds}")
        if self.max_run_seconds <= 0:
            raise ValueError(f"max_run_seconds must be positive, got {self.max_run_seconds}")
        if self.language not in ("auto", *LANGUAGES):
            raise ValueError(f"language must be one of auto, {', '.join(LANGUAGES)}; got {self.language!r}")


@dataclass(frozen=True)
class PlanSegment:
    book: str
    chapter_index: int
    chapter_title: str
    segment_index: int  # within the chapter
    paragraph_index: int  # within the chapter
    text: str  # clean source text
    model_text: str  # what the model reads
    boundary: str  # kind of boundary after this segment: clause | sentence | paragraph | chapter
    est_frames: int  # speech only: explicit pauses are inserted by the pipeline
    language: str
    lexicon_entries: tuple[str, ...]
    key: str
    pause_s: float | None = None  # explicit pause after it (seconds, from markers); None: the boundary's default
    run_index: int = 0  # within the chapter: a run is narrated as one chain of continuations (see PlanOptions)


@dataclass
class Plan:
    book: Book
    segments: list[PlanSegment]
    warnings: list[str] = field(default_factory=list)
    metadata: dict = field(default_factory=dict)

    def summary(self) -> "PlanSummary":
        return PlanSummary(
            book=self.book.title,
            chapters=len({s.chapter_index for s in self.segments}),
            segments=len(self.segments),
            characters=sum(len(s.text) for s in self.segments),
            seconds=sum(s.est_frames for s in self.segments) / DEFAULT_FRAME_RATE,  # planned at this rate
            skipped=list(self.book.skipped),
            warnings=list(self.warnings),
        )


@dataclass(frozen=True)
class PlanSummary:
    book: str
    chapters: int
    segments: int
    characters: int
    seconds: float
    skipped: list[str]
    warnings: list[str]

    def format(self) -> str:
        hours, rest = divmod(round(self.seconds), 3600)
        lines = [
            f"plan: {self.book}",
            f"  chapters:   {self.chapters}",
            f"  segments:   {self.segments}",
            f"  characters: {self.characters}",
            f"  estimated narration time: {hours}:{rest // 60:02d}:{rest % 60:02d}",
        ]
        if self.skipped:
            lines.append(f"  left out ({len(self.skipped)}): " + "; ".join(self.skipped))
        lines.append(f"  warnings ({len(self.warnings)})" + (":" if self.warnings else ": none"))
        lines.extend(f"    - {w}" for w in self.warnings)
        return "\n".join(lines)


class _Planner:
    def __init__(self, book: Book, options: PlanOptions, lexicon: Lexicon, key_inputs: KeyInputs) -> None:
        self.book = book
        self.options = options
        self.lexicon = lexicon
        self.key_inputs = key_inputs
        self.default_language = book_language(book)
        self.left_out: list[str] = []
        self.warnings: list[str] = []
        self.unhandled: dict[str, list[str]] = {}  # language -> places of its segments
        self.dropped: list[str] = []  # "place: words" for segments whose model text lost words
        self.invented: list[str] = []  # "place: words" for segments whose model text says words the text has not
        self.uncovered: list[str] = []  # paragraphs whose cuts do not account for every letter
        self.read_characters = 0  # letters and digits of the paragraphs (all of them are planned)
        self._memo: dict[str, tuple[str, float]] = {}
        self._languages: dict[str, str] = {}

    def language(self, text: str) -> str:
        if self.options.language != "auto":
            return self.options.language
        found = self._languages.get(text)
        if found is None:
            pieces = split_controls(text)
            plain = "".join(piece for piece, kind in pieces if kind != "pinyin")
            syllables = sum(count_pinyin_syllables(piece) for piece, kind in pieces if kind == "pinyin")
            found = detect_language(plain, pinyin_syllables=syllables, default=self.default_language)
            self._languages[text] = found
        return found

    def spoken(self, unit: str) -> tuple[str, float]:
        """Lexicon-free model text and seconds of one unit (remembered within a paragraph)."""
        unit = unit.strip()
        found = self._memo.get(unit)
        if found is None:
            language = self.language(unit)
            model_text = speak_pieces(split_controls(unit), language)
            found = (model_text, estimate_seconds(model_text, self.options.rates, language))
            self._memo[unit] = found
        return found

    def measure(self, unit: str) -> float:
        """Seconds to say a unit without the lexicon: segment boundaries must not depend on it."""
        return self.spoken(unit)[1]

    def model_text(self, units: list[str]) -> tuple[str, list[str]]:
        """A segment's model text from its units (lexicon applied to each), and the lexicon entries used."""
        parts: list[str] = []
        used: list[str] = []
        # The text since the last unit that said something: a unit that says nothing (a lone dash or
        # asterisk cut off an over-long sentence) must not glue the words on either side of it.
        before = ""
        for unit in units:
            pieces, unit_used = self.lexicon.apply(split_controls(unit.strip())) if self.lexicon else ([], [])
            spoken = speak_pieces(pieces, self.language(unit)) if unit_used else self.spoken(unit)[0]
            used.extend(unit_used)
            if not spoken:
                before += unit
                continue
            if parts and _needs_space(before, unit, parts[-1], spoken):
                parts.append(" ")
            parts.append(spoken)
            before = unit
        return "".join(parts).strip(), list(dict.fromkeys(used))

    def chapter(self, index: int, chapter: Chapter) -> tuple[list[PlanSegment], float | None]:
        """The chapter's segments, and the explicit pause written before anything is said in it."""
        segments: list[PlanSegment] = []
        lead_pause: float | None = None
        previous_text: str | None = None
        run_index, run_seconds = 0, 0.0
        for paragraph_index, paragraph in enumerate(chapter.paragraphs):
            cuts = self._cuts(index, chapter, paragraph)
            self._check_coverage(index, chapter, paragraph, cuts)
            # A new run before a paragraph that would take the run past max_run_seconds (measured
            # without the lexicon, like the cuts, so that a lexicon change never moves a run).
            paragraph_seconds = sum(cut.seconds for cut in cuts)
            if segments and run_seconds and run_seconds + paragraph_seconds > self.options.max_run_seconds:
                run_index, run_seconds, previous_text = run_index + 1, 0.0, None
            run_seconds += paragraph_seconds
            for cut in cuts:
                text = paragraph.text[cut.start:cut.speech_end].strip()
                units = [paragraph.text[a:b] for a, b in cut.units]
                model_text, used = self.model_text(units)
                lost = dropped_words(text, model_text, [u.removeprefix("pinyin:") for u in used])
                if lost:
                    self.dropped.append(f"chapter {index + 1}, {paragraph.place}, segment {len(segments)}: "
                                        + ", ".join(repr(w) for w in lost[:5]))
                if not is_speakable(model_text):
                    if text:
                        self.left_out.append(text)
                    if segments:  # keep the pause that the left-out piece stood for
                        segments[-1] = replace(segments[-1], boundary=_stronger(segments[-1].boundary, cut.boundary),
                                               pause_s=_add(segments[-1].pause_s, cut.pause_s))
                    else:
                        lead_pause = _add(lead_pause, cut.pause_s)
                    continue
                language = self.language(text)
                self._check_invented(text, model_text, [language, *map(self.language, units)], used,
                                     f"chapter {index + 1} {chapter.title!r}, paragraph {paragraph_index + 1} "
                                     f"({paragraph.place}), segment {len(segments)}")
                if language not in LANGUAGES:
                    self.unhandled.setdefault(language, []).append(
                        f"chapter {index + 1}, {paragraph.place}, segment {len(segments)}")
                seconds = estimate_seconds(model_text, self.options.rates, language) if used else cut.seconds
                if seconds > self.options.max_seconds:
                    self.warnings.append(
                        f"chapter {index + 1} {chapter.title!r}, segment {len(segments)}: the lexicon made it "
                        f"{seconds:.1f} s, over the {self.options.max_seconds:g} s maximum")
                segments.append(PlanSegment(
                    book=self.book.title, chapter_index=index, chapter_title=chapter.title,
                    segment_index=len(segments), paragraph_index=paragraph_index, text=text,
                    model_text=model_text, boundary=cut.boundary, est_frames=seconds_to_frames(seconds),
                    language=language, lexicon_entries=tuple(used),
                    key=self.key_inputs.key(model_text, previous_text, language), pause_s=cut.pause_s,
                    run_index=run_index,
                ))
                previous_text = model_text
            self._memo.clear()
            self._languages.clear()
        if segments:
            segments[-1] = replace(segments[-1], boundary="chapter")
        return segments, lead_pause

    def _check_invented(self, text: str, model_text: str, languages: list[str], used: list[str], place: str) -> None:
        """Every word the model text says traces back to the text, or to a rewrite or lexicon entry used."""
        pronunciations = [self.lexicon.entries[u].pronunciation for u in used if u in self.lexicon.entries]
        pinyin = any(u.startswith(POLYPHONE_PREFIX) for u in used)
        invented = invented_words(text, model_text, languages, pronunciations, pinyin)
        if invented:
            self.invented.append(f"{place}: " + ", ".join(repr(w) for w in invented[:5]))

    def _check_coverage(self, index: int, chapter: Chapter, paragraph: Paragraph, cuts: list[Cut]) -> None:
        """Every letter and digit of the paragraph lies in one of its cuts (speech or pause markers)."""
        total = speakable_count(paragraph.text)
        self.read_characters += total
        covered = sum(speakable_count(paragraph.text[c.start:c.end]) for c in cuts)
        overlap = any(a.end > b.start for a, b in zip(cuts, cuts[1:]))
        if covered != total or overlap:
            self.uncovered.append(f"chapter {index + 1} {chapter.title!r}, {paragraph.place}: "
                                  f"{total - covered} of {total} letters and digits in no segment")

    def _cuts(self, index: int, chapter: Chapter, paragraph: Paragraph) -> list[Cut]:
        try:
            return segment_paragraph(paragraph.text, self.measure, self.options.target_seconds,
                                     self.options.max_seconds)
        except UnsplittableError as e:
            word = paragraph.text[e.start:e.end]
            excerpt = word if len(word) <= 60 else word[:57] + "..."
            raise InputError(
                self.book.source,
                f"chapter {index + 1} {chapter.title!r}, {paragraph.place}, character {e.start} of the paragraph",
                f"one unbroken word of {len(word)} characters ({excerpt!r}) would take {e.seconds:.0f} s, "
                f"over the {self.options.max_seconds:g} s maximum for a segment",
                "break it with spaces or punctuation, shorten it, or give it a short respelling in the lexicon",
            ) from None


def _needs_space(raw_before: str, raw_after: str, spoken_before: str, spoken_after: str) -> bool:
    """Whether two units' spoken forms need a space between them: where the text had one, or
    where what stood between them (a dash at a clause cut: "off—then") was dropped and two words
    would otherwise run together."""
    if raw_before[-1:].isspace() or raw_after[:1].isspace():
        return True
    glued_in_text = raw_before[-1:].isalnum() and raw_after[:1].isalnum()
    return not glued_in_text and _is_latin_alnum(spoken_before[-1]) and _is_latin_alnum(spoken_after[0])


def _is_latin_alnum(ch: str) -> bool:
    return ch.isalnum() and ch < "\u0250"


def build_plan(book: Book, options: PlanOptions, lexicon: Lexicon | None, key_inputs: KeyInputs) -> Plan:
    """Every chapter of `book` cut into keyed segments. Raises InputError for input that cannot be narrated."""
    lexicon = lexicon if lexicon is not None else Lexicon()
    planner = _Planner(book, options, lexicon, key_inputs)
    segments: list[PlanSegment] = []
    for index, chapter in enumerate(book.chapters):
        chapter_segments, lead_pause = planner.chapter(index, chapter)
        if lead_pause is not None:
            if segments:  # a pause at the start of a chapter follows the previous chapter's last segment
                segments[-1] = replace(segments[-1], pause_s=_add(segments[-1].pause_s, lead_pause))
            else:
                planner.warnings.append(
                    f"chapter {index + 1} {chapter.title!r}: a pause of {lead_pause:g} s before anything is said "
                    "in the book has no segment to follow; dropped")
        if not chapter_segments:
            planner.warnings.append(f"chapter {index + 1} {chapter.title!r} has nothing to say; left out")
        segments.extend(chapter_segments)
    if not segments:
        raise InputError(book.source, "", "no text to narrate was found", "check the manuscript and the reading options")

    warnings = list(book.warnings) + planner.warnings + _coverage_warnings(book, planner)
    for language, places in planner.unhandled.items():
        warnings.append(
            f"{len(places)} segment(s) in {language_name(language)} ({language}), a language this pipeline does "
            f"not handle, e.g. {places[0]}: narrated as written, at the English speaking rate, numbers read by "
            "num2words where it knows the language; set language= to one of "
            f"{', '.join(LANGUAGES)} to force one")
    if planner.left_out:
        examples = ", ".join(repr(t[:20]) for t in planner.left_out[:3])
        warnings.append(f"{len(planner.left_out)} piece(s) with nothing to say left out (e.g. {examples})")
    used = {entry for s in segments for entry in s.lexicon_entries}
    unused = [e for e in lexicon.entries.values() if e.term not in used]
    if unused:
        warnings.append("lexicon entries that matched nothing: " + ", ".join(f"{e.term!r} (line {e.line})" for e in unused))

    metadata = {
        "plan_version": PLAN_VERSION,
        "book": book.title,
        "author": book.author,
        "source": book.source,
        "options": asdict(options),
        "key_inputs": asdict(key_inputs),
        "lexicon_digest": lexicon.digest(),
    }
    return Plan(book=book, segments=segments, warnings=warnings, metadata=metadata)


_SAMPLE_CHARACTERS = 20_000


def _coverage_warnings(book: Book, planner: _Planner) -> list[str]:
    """What the checks found: text in no segment, letters the reader neither read nor skipped on
    purpose, words lost by normalization, words it invented."""
    warnings = [f"text in no segment: {place}" for place in planner.uncovered]
    if book.source_characters is not None:
        skipped = sum(book.skipped_characters.values())
        unaccounted = book.source_characters - planner.read_characters - skipped
        if unaccounted:
            known = ", ".join(f"{reason} {n}" for reason, n in sorted(book.skipped_characters.items())) or "none"
            warnings.append(
                f"{book.source}: {unaccounted} of the source's {book.source_characters} letters and digits are "
                f"neither read nor left out on purpose (read {planner.read_characters}; known skips: {known})")
    if planner.dropped:
        warnings.append(f"{len(planner.dropped)} segment(s) whose model text leaves out words of the text, e.g. "
                        + "; ".join(planner.dropped[:5]))
    if planner.invented:
        warnings.append(f"{len(planner.invented)} segment(s) whose model text says words that are not in the text "
                        "(nor a spoken number, abbreviation, unit or lexicon entry of it), e.g. "
                        + "; ".join(planner.invented[:5]))
    return warnings


def coverage(plan: Plan) -> dict[str, int]:
    """The plan's account of the source's letters and digits: read, skipped (by reason), unaccounted."""
    book = plan.book
    read = sum(speakable_count(p.text) for c in book.chapters for p in c.paragraphs)
    skipped = dict(book.skipped_characters)
    source = book.source_characters if book.source_characters is not None else read + sum(skipped.values())
    return {"source": source, "read": read, **{f"skipped: {k}": v for k, v in skipped.items()},
            "unaccounted": source - read - sum(skipped.values())}


def book_language(book: Book) -> str:
    """The language short or unclear text falls back to: the book's metadata, else its opening text's."""
    if book.language:
        return book.language
    sample: list[str] = []
    size = 0
    for chapter in book.chapters:
        for paragraph in chapter.paragraphs:
            sample.append(paragraph.text)
            size += len(paragraph.text)
            if size >= _SAMPLE_CHARACTERS:
                break
        if size >= _SAMPLE_CHARACTERS:
            break
    return detect_language(" ".join(sample)[:_SAMPLE_CHARACTERS], default="en")


def write_plan(plan: Plan, path: str | Path) -> Path:
    """The plan as a Parquet table at `path` (metadata under the key moss_narrator.plan)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = {name: [getattr(s, name) for s in plan.segments] for name in PLAN_SCHEMA.names}
    columns["lexicon_entries"] = [list(entries) for entries in columns["lexicon_entries"]]
    table = pa.table(columns, schema=PLAN_SCHEMA)
    table = table.replace_schema_metadata({METADATA_KEY: json.dumps(plan.metadata, ensure_ascii=False).encode()})
    pq.write_table(table, path)
    return path


def read_plan(path: str | Path) -> tuple[list[PlanSegment], dict]:
    """The segments and metadata of a plan written by `write_plan`."""
    table = pq.read_table(path)
    metadata = json.loads((table.schema.metadata or {}).get(METADATA_KEY, b"{}"))
    rows = table.to_pylist()
    segments = [PlanSegment(**{**row, "lexicon_entries": tuple(row["lexicon_entries"]),
                               "pause_s": _pause(row.get("pause_s"))}) for row in rows]
    return segments, metadata


def _pause(value: float | None) -> float | None:
    """A stored pause: null (or NaN, as other writers may store it) is None."""
    return None if value is None or math.isnan(value) else float(value)


def _add(a: float | None, b: float | None) -> float | None:
    """Two explicit pauses one after the other (None: no explicit pause)."""
    return a if b is None else b if a is None else a + b


def _stronger(a: str, b: str) -> str:
    return max(a, b, key=BOUNDARY_KINDS.index)
