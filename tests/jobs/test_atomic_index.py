"""Finishing writes every index file (and the plan) whole or not at all.

The crash is simulated: the Parquet writer is monkeypatched to write part of the file and
then raise, as a run killed mid-write would leave it. The old table must stay as it was, the
temporary file must be gone (or, left by a real kill, ignored by readers and removed by the
next run), and the book table (the completion marker) must be absent until the last write.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import index

INFO = index.IndexInfo(model_id="tiny", model_revision="rev", sample_rate_hz=24000, loudness_target_lufs=-18.0,
                       true_peak_ceiling_dbtp=-1.0)


def rows(schema: pa.Schema, count: int, text: str) -> list[dict]:
    """`count` rows that fit `schema`, every string column set to `text`."""
    def value(field: pa.Field, number: int):
        if pa.types.is_string(field.type):
            return text
        if pa.types.is_integer(field.type):
            return number
        if pa.types.is_floating(field.type):
            return float(number)
        if pa.types.is_boolean(field.type):
            return False
        return []  # the list columns (flags)
    return [{f.name: value(f, n) for f in schema} for n in range(count)]


def read_tables(output: Path) -> tuple[pa.Table, ...]:
    """(segments, chapters, book), each read by its own name as readers of the index read them."""
    return tuple(index.read_table(index.table_path(output, name)) for name in index.TABLES)


def write_book(output: Path, segments: int, text: str) -> None:
    index.write_index(output, rows(index.SEGMENT_SCHEMA, segments, text), rows(index.CHAPTER_SCHEMA, 2, text),
                      rows(index.BOOK_SCHEMA, 1, text)[0], INFO)


def partial_files(output: Path) -> list[Path]:
    return sorted(p for p in (output / index.INDEX_DIR).rglob("*") if p.name.endswith(".partial"))


def written_by(output: Path, table: str) -> str:
    """The text a table's string columns were written with ("old" or "new")."""
    data = pq.read_table(index.table_path(output, table))
    column = next(f.name for f in data.schema if pa.types.is_string(f.type))
    return data.column(column).to_pylist()[0]


def crashing_writer(real_write, crash_on: str):
    """pq.write_table that, for the file named `crash_on`, writes half of it and then raises."""
    def write(table, where, *args, **kwargs):
        if crash_on not in Path(where).name:
            return real_write(table, where, *args, **kwargs)
        sink = pa.BufferOutputStream()
        real_write(table, sink, *args, **kwargs)
        data = sink.getvalue().to_pybytes()
        Path(where).write_bytes(data[: len(data) // 2])
        raise OSError("simulated crash in the middle of writing")
    return write


@pytest.mark.parametrize("crash_on", ["segments", "chapters", "book"])
def test_a_crash_mid_write_keeps_the_old_table_and_leaves_no_temporary_file(tmp_path, monkeypatch, crash_on):
    output = tmp_path / "out"
    write_book(output, segments=3, text="old")
    old = {name: pq.read_table(index.table_path(output, name)) for name in index.TABLES}

    monkeypatch.setattr(index.pq, "write_table", crashing_writer(pq.write_table, crash_on))
    with pytest.raises(OSError, match="simulated crash"):
        write_book(output, segments=5, text="new")
    monkeypatch.undo()

    assert partial_files(output) == []
    # Not complete: the book table was removed before anything else was written.
    assert not index.table_path(output, "book").exists()
    # The table being written when it crashed is the old one, whole; those before it are the new ones, whole.
    for name in index.TABLES[: index.TABLES.index(crash_on)]:
        assert written_by(output, name) == "new"
    if crash_on != "book":
        assert pq.read_table(index.table_path(output, crash_on)).equals(old[crash_on])

    write_book(output, segments=5, text="new")  # the next run completes it
    segments, _, book = read_tables(output)
    assert segments.num_rows == 5 and book.column("title").to_pylist() == ["new"]


def test_a_temporary_file_left_by_a_killed_run_is_ignored_and_removed(tmp_path):
    output = tmp_path / "out"
    write_book(output, segments=3, text="old")
    # kill -9 between writing the temporary file and renaming it leaves this behind.
    leftover = index.table_path(output, "segments").with_name(".segments.parquet.partial")
    leftover.write_bytes(b"PAR1 half a table")
    segments, _, _ = read_tables(output)  # readers open the table by its own name only
    assert segments.num_rows == 3
    write_book(output, segments=4, text="new")
    assert not leftover.exists() and partial_files(output) == []


def test_readers_never_see_a_partial_table(tmp_path, monkeypatch):
    """A reader polls the segments table while it is rewritten again and again by a slow writer.

    The reader opens the file once per read (index.read_table): every open file is one whole
    table, the old or the new. (pq.read_table(path) may open the path twice, footer then pages,
    and mix two versions: readers of a live index open it once.)"""
    output = tmp_path / "out"
    write_book(output, segments=3, text="old")
    real_write = pq.write_table

    def slow_write(table, where, *args, **kwargs):  # the file grows in pieces, as a large table would
        sink = pa.BufferOutputStream()
        real_write(table, sink, *args, **kwargs)
        data = sink.getvalue().to_pybytes()
        with open(where, "wb") as file:
            for start in range(0, len(data), 512):
                file.write(data[start:start + 512])
                file.flush()
                time.sleep(0.001)

    monkeypatch.setattr(index.pq, "write_table", slow_write)
    seen, errors, done = set(), [], threading.Event()

    def reader():
        while not done.is_set():
            try:
                seen.add(index.read_table(index.table_path(output, "segments")).num_rows)
            except Exception as error:  # a torn or missing file
                errors.append(error)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for count in range(4, 14):
            write_book(output, segments=count, text="new")
    finally:
        done.set()
        thread.join()
    assert errors == []
    assert seen <= set(range(3, 14)) and len(seen) > 1


def test_the_plan_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    from jobs import common

    path = tmp_path / "plan.parquet"
    table = pa.table({"x": [1, 2, 3]})
    index.write_atomically(path, lambda temporary: pq.write_table(table, temporary))

    class Plan:  # what save_plan hands to write_plan; the patched one writes half and fails
        pass

    def failing_write_plan(plan, temporary):
        Path(temporary).write_bytes(b"PAR1 half a plan")
        raise OSError("simulated crash in the middle of writing")

    monkeypatch.setattr(common, "write_plan", failing_write_plan)
    with pytest.raises(OSError, match="simulated crash"):
        common.save_plan(Plan(), path)
    assert pq.read_table(path).equals(table)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.parquet"]
