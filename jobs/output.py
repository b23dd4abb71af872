"""Where a book job's files go: a local folder, or a URL on object storage (`output=s3://bucket/book`).

For a URL the job writes its files into a staging folder on this machine, and the segment store
lives at the URL itself (`<url>/store`, unless `store=` says otherwise), so a narrated segment is
safe the moment it is stored and any machine can resume the book. When finishing is done the
staging folder is published to the URL file by file, the index's book table last (finishing
removes it there first): a reader of the URL sees a complete index only once every file it names
is there. Inputs given as URLs (`input=`, `voice=`, `voice_text_file=`, `lexicon=`; for datasets
`input=` and `voices=`, files or folders) are fetched into this machine's cache before they are
checked; narrator actors fetch the voice themselves. job=synthesize publishes its shards, card
and manifest the same way (it has no book table: everything is copied).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from jobs.config import STORE_DIR, _multirun_job_dir, job_paths
from jobs.settings import MARKER, book_identity
from pipeline import index, storage
from pipeline.errors import InputError
from pipeline.narration.models import cache_dir

URL_INPUTS = ("input", "voice", "voice_text_file", "lexicon")


@dataclass(frozen=True)
class OutputPlace:
    local: Path  # where the job writes: the output folder itself, or the staging folder of a URL
    remote: str | None  # the URL the finished files are published to; None for a local output
    store: str  # the segment store: a folder or a URL


def output_place(cfg: DictConfig) -> OutputPlace:
    remote_store = str(cfg.store) if cfg.get("store") and storage.is_remote(cfg.store) else None
    if not storage.is_remote(cfg.output):
        local = cfg
        if remote_store is not None:
            local = OmegaConf.merge(cfg, {"store": None})
            assert isinstance(local, DictConfig)  # a DictConfig merged with a mapping stays one
        output, store = job_paths(local)
        return OutputPlace(output.expanduser().absolute(), None, remote_store or str(store.expanduser().absolute()))
    base = str(cfg.output).rstrip("/")
    job_dir = _multirun_job_dir()
    url = storage.join(base, job_dir if job_dir != STORE_DIR else f"{job_dir}_") if job_dir else base
    store = str(cfg.store) if cfg.get("store") else storage.join(base, STORE_DIR)
    staging = cache_dir() / "staging" / hashlib.sha256(url.encode()).hexdigest()[:16]
    return OutputPlace(staging, url, store)


def fetch_inputs(cfg: DictConfig, keys: tuple[str, ...] = URL_INPUTS) -> tuple[DictConfig, dict[str, str]]:
    """The config with every input URL among `keys` replaced by a local copy (a file or a folder) in
    this machine's cache, and the URLs replaced (key -> URL). A URL that cannot be read is an
    InputError naming it."""
    urls = {key: str(cfg[key]) for key in keys if cfg.get(key) is not None and storage.is_remote(cfg[key])}
    if not urls:
        return cfg, {}
    local = {}
    for key, url in urls.items():
        # beside, not in, the output: nothing is written there before every check has passed
        target = cache_dir() / "inputs" / hashlib.sha256(url.encode()).hexdigest()[:16] / url.rstrip("/").rsplit("/", 1)[-1]
        try:
            storage.fetch(url, target)
        except (OSError, ValueError, ImportError) as error:
            raise InputError(key, storage.display(url), f"cannot be read ({type(error).__name__}: {error})",
                             "check the URL and the credentials in the environment (never put them in the URL)") from error
        local[key] = str(target)
    merged = OmegaConf.merge(cfg, local)
    assert isinstance(merged, DictConfig)
    return merged, urls


def remote_problems(url: str, source: Path | None, overwrite: bool) -> list[tuple[str, Any, str]]:
    """Why a URL output must not be written: it holds files this tool did not write, or another book's."""
    try:
        names = storage.listdir(url)
    except Exception as error:  # each object store raises its own kinds: all mean "cannot use it"
        return [("output", storage.display(url), f"cannot be listed ({type(error).__name__}: {error}); check the URL "
                 "and the credentials in the environment")]
    if not names or overwrite:
        return []
    if MARKER not in names:
        return [("output", storage.display(url), "holds files this tool did not write; pass output= a new location, "
                 "or overwrite=true to write into it")]
    owner = json.loads(storage.read_text(storage.join(url, MARKER)))
    if source is not None:
        mine, theirs = book_identity(source), owner.get("book") or {}
        if mine["sha256"] != theirs.get("sha256"):
            return [("output", storage.display(url), f"holds the output of another book ({theirs.get('path')}); "
                     "pass output= a location of its own, or overwrite=true to replace it")]
    return []


def claim_remote(url: str, source: Path | None, job: str, config_yaml: str) -> None:
    """Mark the URL as this book's output and write the composed config there (after every check).
    The staging folder is emptied first by `fresh_staging`: the URL holds the truth, and every file
    the run publishes is written again by this run."""
    marker = {"tool": "moss-narrator", "job": job, "book": book_identity(source) if source else None}
    storage.write_text(storage.join(url, MARKER), json.dumps(marker, indent=1))
    storage.write_text(storage.join(url, "config.yaml"), config_yaml)


def fresh_staging(place: OutputPlace) -> None:
    """Empty an object-storage output's staging folder, so that nothing an earlier run left there
    is published again."""
    if place.remote and place.local.exists():
        shutil.rmtree(place.local)


def book_table(folder: Path) -> Path:
    return index.table_path(folder, "book")


def unpublish(place: OutputPlace) -> None:
    """Before finishing writes anything: the published index stops looking complete."""
    if place.remote:
        storage.remove(storage.join(place.remote, book_table(place.local).relative_to(place.local).as_posix()))


def publish(place: OutputPlace) -> None:
    """Copy the finished files from the staging folder to the URL, the book table last."""
    if not place.remote:
        return
    last = book_table(place.local).relative_to(place.local).as_posix()
    skip = frozenset({MARKER, last.rsplit("/", 1)[-1]})
    storage.upload_tree(place.local, place.remote, skip=skip)
    if (place.local / last).is_file():  # job=plan writes no index
        storage.upload_file(place.local / last, storage.join(place.remote, last))
