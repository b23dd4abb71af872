"""Job "report": the quality report of a narrated book, from its index alone.

Writes ``<output>/report.html`` (plots inline, no scripts, nothing fetched: it opens offline)
and ``report_similarity.png`` / ``report_wer.png`` beside it (``pipeline.quality.report``).
Needs a finished index: a missing or unfinished one is bad input (exit 2). job=narrate ends
with the same report (``pipeline.quality.report.write_book_report``, when ``quality.report``).
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from jobs.config import job_paths, quality_options
from pipeline import index
from pipeline.errors import InputError


def _book(output: Path) -> dict:
    """The book row of a finished index; InputError when there is none."""
    if not index.table_path(output, "segments").is_file():
        raise InputError(output / index.INDEX_DIR, "", "holds no index of a narrated book (segments/segments.parquet "
                         "is missing)", "pass output=DIR naming the folder job=narrate wrote, after it finished")
    if not index.table_path(output, "book").is_file():
        raise InputError(output / index.INDEX_DIR, "", "the index is not finished (book/book.parquet is missing: "
                         "narration or finishing stopped before the end)",
                         "run the same job=narrate (or job=finish) command again to finish it, then job=report")
    return index.read_table(index.table_path(output, "book")).to_pylist()[0]


def run(cfg: DictConfig) -> dict:
    from pipeline.quality.report import write_report

    if "://" in str(cfg.output):
        raise InputError(f"output={cfg.output}", "", "job=report reads a local output folder, not object storage",
                         "copy the output (its index/ and chapters/) to a local folder and pass output=DIR")
    output = job_paths(cfg)[0].expanduser().absolute()
    if not output.is_dir():
        raise InputError(output, "", "no such folder", "pass output=DIR naming the folder job=narrate wrote")
    book = _book(output)
    report = write_report(output, options=quality_options(cfg, bool(book.get("tiny_random_model"))))
    print(f"quality report: {report.html}\n  plots: {', '.join(str(p) for p in report.plots)}\n"
          f"  {report.segments} segments, {report.flagged} flagged")
    return {"html": str(report.html), "plots": [str(p) for p in report.plots], "segments": report.segments,
            "flagged": report.flagged}
