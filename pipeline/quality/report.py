"""The quality report: one self-contained HTML page read from a finished output's index.

    <output>/report.html               the page (plots inline as PNG data URIs, no scripts, no network)
    <output>/report_similarity.png     speaker similarity over the book, chapter by chapter
    <output>/report_wer.png            the distribution of WER

It reads ``<output>/index/segments`` (required) and ``chapters`` / ``book`` (when present). The
quality columns (``similarity_to_reference``, ``similarity_to_run``, ``wer``, ``transcript``,
``quality_flags``) are used where the segment table has them; without them the page says "not
measured" and still lists the segments the narrator's own checks flagged (``flags``). Each
flagged segment links to its chapter's audio at its time (``chapters/<stem>.flac#t=<seconds>``,
a media fragment browsers honour) and carries a small player that starts there.
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from pipeline.index import read_table, table_path
from pipeline.quality.decisions import QualityOptions

REPORT_NAME = "report.html"
MAX_FLAGGED_ROWS = 1000  # a page of noise would list every segment; the count is given in full
QUALITY_COLUMNS = ("similarity_to_reference", "similarity_to_run", "wer", "transcript", "quality_flags")


@dataclass(frozen=True)
class Report:
    html: Path
    plots: tuple[Path, ...]
    segments: int
    flagged: int


def _rows(path: Path) -> list[dict[str, Any]] | None:
    return read_table(path).to_pylist() if path.is_file() else None


def _values(rows: Sequence[dict[str, Any]], column: str) -> np.ndarray:
    """A float column as an array (NaN where null or absent)."""
    return np.array([np.nan if r.get(column) is None else float(r[column]) for r in rows], dtype=np.float64)


def is_flagged(row: dict[str, Any]) -> bool:
    return bool(row.get("flags")) or bool(row.get("quality_flags"))


def _stat(values: np.ndarray, how: str) -> float | None:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    return float({"mean": np.mean, "min": np.min, "max": np.max, "median": np.median}[how](values))


def chapter_summary(segment_rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per chapter (in chapter order): segments, similarity to the reference (mean, worst = lowest),
    WER (mean, worst = highest) and how many segments are flagged. The chapters table can carry
    these as its quality columns."""
    by_chapter: dict[int, list[dict[str, Any]]] = {}
    for row in segment_rows:
        by_chapter.setdefault(int(row["chapter_index"]), []).append(row)
    summary = []
    for chapter_index, rows in sorted(by_chapter.items()):
        similarity, wer = _values(rows, "similarity_to_reference"), _values(rows, "wer")
        summary.append({
            "chapter_index": chapter_index,
            "chapter_title": rows[0].get("chapter_title", ""),
            "segments": len(rows),
            "similarity_mean": _stat(similarity, "mean"),
            "similarity_worst": _stat(similarity, "min"),
            "wer_mean": _stat(wer, "mean"),
            "wer_worst": _stat(wer, "max"),
            "flagged": sum(is_flagged(r) for r in rows),
        })
    return summary


# --- plots -------------------------------------------------------------------------------


def _figure(width: float = 11.0, height: float = 3.6):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)  # the Agg canvas, without pyplot's global backend state
    return figure


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _book_times(rows: Sequence[dict[str, Any]], chapters: Sequence[dict[str, Any]] | None) -> np.ndarray:
    """Each segment's start in the book, in minutes (chapter offsets from the chapters table when
    it has them, else chapters laid end to end by their last segment)."""
    offsets: dict[int, float] = {}
    if chapters and all(c.get("m4b_start_s") is not None for c in chapters):
        offsets = {int(c["chapter_index"]): float(c["m4b_start_s"]) for c in chapters}
    else:
        ends: dict[int, float] = {}
        for r in rows:
            chapter_index, end = int(r["chapter_index"]), float(r["end_s"]) + float(r.get("pause_after_s") or 0.0)
            ends[chapter_index] = max(ends.get(chapter_index, 0.0), end)
        position = 0.0
        for chapter_index in sorted(ends):
            offsets[chapter_index] = position
            position += ends[chapter_index]
    return np.array([(offsets.get(int(r["chapter_index"]), 0.0) + float(r["start_s"])) / 60.0 for r in rows])


def similarity_plot(rows: Sequence[dict[str, Any]], chapters: Sequence[dict[str, Any]] | None,
                    options: QualityOptions | None) -> bytes:
    """Similarity to the reference (points) and to the run so far (faint) over book time; chapters
    shaded in turn and labelled; flagged segments red."""
    figure = _figure()
    axes = figure.add_subplot()
    times = _book_times(rows, chapters)
    to_reference, to_run = _values(rows, "similarity_to_reference"), _values(rows, "similarity_to_run")
    chapter_of = np.array([int(r["chapter_index"]) for r in rows])
    flagged = np.array([is_flagged(r) for r in rows], dtype=bool)
    unit = "minutes"
    if len(times) and times.max() > 120:
        times, unit = times / 60.0, "hours"
    for number, chapter_index in enumerate(dict.fromkeys(chapter_of.tolist())):
        inside = chapter_of == chapter_index
        left, right = float(times[inside].min()), float(times[inside].max())
        if number % 2:
            axes.axvspan(left, right, color="0.93", lw=0)
        axes.text(left, 1.01, str(chapter_index + 1), transform=axes.get_xaxis_transform(), fontsize=7, color="0.4")
        if np.isfinite(to_reference[inside]).any():  # the chapter's mean, a step across it
            axes.hlines(np.nanmean(to_reference[inside]), left, right, color="navy", lw=1.5,
                        label="chapter mean" if number == 0 else "")  # "": no legend entry
    if np.isfinite(to_reference).any() or np.isfinite(to_run).any():
        axes.plot(times, to_run, ".", ms=3, color="tab:green", alpha=0.35, label="to the run so far")
        axes.plot(times[~flagged], to_reference[~flagged], ".", ms=4, color="tab:blue", label="to the reference")
        axes.plot(times[flagged], to_reference[flagged], "x", ms=5, color="tab:red", label="flagged")
        if options is not None:
            axes.axhline(options.min_similarity, color="tab:red", lw=0.8, ls="--", label=f"floor {options.min_similarity:.2f}")
        axes.set_ylim(min(0.0, float(np.nanmin(np.concatenate([to_reference, to_run]))) - 0.02), 1.0)
        axes.legend(loc="lower left", fontsize=8, ncols=5)
    else:
        axes.text(0.5, 0.5, "speaker similarity not measured", transform=axes.transAxes, ha="center", va="center")
        axes.set_ylim(0.0, 1.0)
    if len(times):
        axes.set_xlim(float(times.min()), float(times.max()) + 1e-6)
    axes.set_xlabel(f"book time ({unit}); chapters numbered along the top")
    axes.set_ylabel("speaker similarity (cosine)")
    return _png(figure)


def wer_plot(rows: Sequence[dict[str, Any]], options: QualityOptions | None) -> bytes:
    figure = _figure(7.0, 3.2)
    axes = figure.add_subplot()
    wer = _values(rows, "wer")
    wer = wer[np.isfinite(wer)]
    if wer.size:
        top = max(1.0, float(wer.max()))
        axes.hist(np.minimum(wer, top), bins=np.linspace(0, top, 26).tolist(), color="tab:blue")
        if options is not None:
            axes.axvline(options.max_wer, color="tab:red", lw=0.8, ls="--", label=f"threshold {options.max_wer:.2f}")
            axes.legend(fontsize=8)
        axes.set_title(f"{wer.size} segments measured; median WER {np.median(wer):.2f}", fontsize=9)
    else:
        axes.text(0.5, 0.5, "WER not measured", transform=axes.transAxes, ha="center", va="center")
    axes.set_xlabel("word error rate")
    axes.set_ylabel("segments")
    return _png(figure)


# --- the page ----------------------------------------------------------------------------


def _number(value: Any, digits: int = 3) -> str:
    return "&ndash;" if value is None or (isinstance(value, float) and not np.isfinite(value)) else f"{value:.{digits}f}"


def _clock(seconds: float) -> str:
    minutes, second = divmod(max(0.0, seconds), 60)
    hours, minute = divmod(int(minutes), 60)
    return f"{hours}:{minute:02d}:{second:04.1f}" if hours else f"{minute}:{second:04.1f}"


def _audio_href(output: Path, folder: Path, chapter_file: str, start_s: float) -> str:
    target = os.path.relpath(output / chapter_file, folder)
    return f"{quote(Path(target).as_posix())}#t={start_s:.2f}"


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1150px;color:#222}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.85em;width:100%}
td,th{border-bottom:1px solid #ddd;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.warn{color:#a00}.muted{color:#777}img{max-width:100%}audio{height:1.8em;width:14em}
"""


def write_report(output: str | Path, destination: str | Path | None = None,
                 options: QualityOptions | None = None) -> Report:
    """Write the report of the output folder ``output`` (default ``<output>/report.html``, the PNGs
    beside it). ``options``: the thresholds to draw (None: none drawn)."""
    output = Path(output)
    page = Path(destination) if destination is not None else output / REPORT_NAME
    folder = page.parent
    folder.mkdir(parents=True, exist_ok=True)
    rows = _rows(table_path(output, "segments"))
    if rows is None:
        raise FileNotFoundError(f"{table_path(output, 'segments')} is missing: the report reads a narrated output's index")
    chapters = _rows(table_path(output, "chapters"))
    book = (_rows(table_path(output, "book")) or [None])[0]
    measured = [c for c in QUALITY_COLUMNS if rows and c in rows[0]]

    plots = {"similarity": similarity_plot(rows, chapters, options), "wer": wer_plot(rows, options)}
    stem = page.stem
    paths = []
    for name, png in plots.items():
        path = folder / f"{stem}_{name}.png"
        path.write_bytes(png)
        paths.append(path)

    title = (book or {}).get("title") or (rows[0]["book"] if rows else output.name)
    flagged = [r for r in rows if is_flagged(r)]
    similarity, wer = _values(rows, "similarity_to_reference"), _values(rows, "wer")
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Quality: {html.escape(title)}</title>",
             f"<style>{STYLE}</style></head><body>", f"<h1>Quality report: {html.escape(title)}</h1>"]
    facts = [f"{len(rows)} segments in {len({r['chapter_index'] for r in rows})} chapters",
             f"<span class='{'warn' if flagged else ''}'>{len(flagged)} flagged</span>"]
    if np.isfinite(similarity).any():
        facts.append(f"similarity to the reference: median {_number(_stat(similarity, 'median'))}, "
                     f"worst {_number(_stat(similarity, 'min'))}")
    if np.isfinite(wer).any():
        facts.append(f"WER: median {_number(_stat(wer, 'median'), 2)} over {int(np.isfinite(wer).sum())} segments")
    missing = [c for c in QUALITY_COLUMNS if c not in measured]
    if missing:
        facts.append(f"<span class='muted'>not in this index: {', '.join(missing)}</span>")
    if book and book.get("tiny_random_model"):
        facts.append("<span class='warn'>narrated by a tiny random-weight model: its audio is noise</span>")
    parts.append("<p>" + " &middot; ".join(facts) + "</p>")
    parts.append("<h2>Speaker similarity over the book</h2>"
                 "<p class='muted'>Each point is a segment: how close its voice is to the voice reference (blue) "
                 "and to the earlier segments of its run (green). Higher is closer; a dip is a segment in another "
                 "voice, a slope is drift.</p>")
    parts.append(f"<img alt='speaker similarity over the book' src='{_data_uri(plots['similarity'])}'>")
    parts.append("<h2>Word error rate</h2><p class='muted'>Words an automatic recognizer heard differently "
                 "from the text (English segments). A few high values are recognizer mistakes; a segment far "
                 "above the rest skipped or repeated words.</p>")
    parts.append(f"<img alt='WER distribution' src='{_data_uri(plots['wer'])}'>")

    parts.append("<h2>Chapters</h2><table><tr><th>#</th><th>title</th><th>segments</th><th>similarity mean</th>"
                 "<th>similarity worst</th><th>WER mean</th><th>WER worst</th><th>flagged</th></tr>")
    for c in chapter_summary(rows):
        parts.append(f"<tr><td class='n'>{c['chapter_index'] + 1}</td><td>{html.escape(str(c['chapter_title']))}</td>"
                     f"<td class='n'>{c['segments']}</td><td class='n'>{_number(c['similarity_mean'])}</td>"
                     f"<td class='n'>{_number(c['similarity_worst'])}</td><td class='n'>{_number(c['wer_mean'], 2)}</td>"
                     f"<td class='n'>{_number(c['wer_worst'], 2)}</td><td class='n'>{c['flagged']}</td></tr>")
    parts.append("</table>")

    parts.append(f"<h2>Flagged segments ({len(flagged)})</h2>")
    if flagged:
        if len(flagged) > MAX_FLAGGED_ROWS:
            parts.append(f"<p class='warn'>The first {MAX_FLAGGED_ROWS} are listed.</p>")
        parts.append("<table><tr><th>chapter</th><th>segment</th><th>at</th><th>flags</th><th>similarity</th>"
                     "<th>to run</th><th>WER</th><th>text</th><th>listen</th></tr>")
        for r in flagged[:MAX_FLAGGED_ROWS]:
            flags = [*(r.get("flags") or []), *(r.get("quality_flags") or [])]
            href = _audio_href(output, folder, r["chapter_file"], float(r["start_s"]))
            text = html.escape(r["text"])
            if r.get("transcript") is not None:
                text += f"<br><span class='muted'>heard: {html.escape(r['transcript'])}</span>"
            parts.append(
                f"<tr><td class='n'>{r['chapter_index'] + 1}</td><td class='n'>{r['segment_index'] + 1}</td>"
                f"<td class='n'><a href='{html.escape(href)}'>{_clock(float(r['start_s']))}</a></td>"
                f"<td>{html.escape(', '.join(flags))}</td>"
                f"<td class='n'>{_number(r.get('similarity_to_reference'))}</td>"
                f"<td class='n'>{_number(r.get('similarity_to_run'))}</td><td class='n'>{_number(r.get('wer'), 2)}</td>"
                f"<td>{text}</td><td><audio controls preload='none' src='{html.escape(href)}'></audio></td></tr>")
        parts.append("</table>")
    else:
        parts.append("<p>None.</p>")
    parts.append("</body></html>")
    page.write_text("\n".join(parts), encoding="utf-8")
    return Report(page, tuple(paths), len(rows), len(flagged))


def write_book_report(output: str | Path, options: QualityOptions | None = None) -> Report | None:
    """``write_report`` as the last step of a narration: the book is finished by then, so a report
    that cannot be written is a warning (None), never a failed run."""
    import warnings

    try:
        report = write_report(output, options=options)
    except Exception as error:  # noqa: BLE001  (the report is an extra; the audiobook is done)
        warnings.warn(f"the quality report of {output} was not written: {error}", stacklevel=2)
        return None
    print(f"quality report: {report.html} ({report.flagged} of {report.segments} segments flagged)")
    return report
