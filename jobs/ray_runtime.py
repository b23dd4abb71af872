"""The Ray adapter: it schedules and does nothing else. The only module that imports Ray.

Narrator actors load the model and codec once; each is handed its share of the book's runs
(longest first, each to the actor with the least work so far) and narrates them with its rows
kept full; finishing runs as one CPU task per chapter. Only codes (in the segment store) and
small records cross process boundaries: the driver never holds audio. What is scheduled (the
runs, the chapters' work, the M4B and the index) is decided in jobs/common.py and pipeline/.
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import ray
from ray.exceptions import GetTimeoutError, RayActorError
from tqdm import tqdm

from jobs.config import generated_voice_id
from moss_model.codec.rates import DEFAULT_FRAME_RATE
from pipeline.errors import InputError
from pipeline.finishing.chapter_audio import finish_chapter_from_store
from pipeline.narration.narrate import ChapterReport, Narrator, RunTask
from pipeline.narration.store import SegmentStore
from pipeline.narration.voice import Voice, encode_voice, voice_wave

if TYPE_CHECKING:
    from jobs.common import ChapterWork, RunSetup
    from jobs.config import ClusterOptions
    from pipeline.dataset.synth import SynthOptions
    from pipeline.finishing.finish import BookInfo, FinishedChapter
    from pipeline.narration.models import ModelChoice
    from pipeline.narration.voice import VoiceSpec

POLL_SECONDS = 1.0


@contextlib.contextmanager
def connect(cluster: ClusterOptions):
    """Join the configured cluster, or start an embedded one; shut down only what we started."""
    if ray.is_initialized():
        yield
        return
    project = str(Path(__file__).resolve().parents[1])
    runtime_env = {"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in (project, os.environ.get("PYTHONPATH")) if p)}}
    reaper = None
    if cluster.address:
        ray.init(address=cluster.address, runtime_env=runtime_env, log_to_driver=True)
    else:
        ray.init(num_cpus=cluster.num_cpus, include_dashboard=cluster.dashboard, runtime_env=runtime_env,
                 log_to_driver=True)
        reaper = start_reaper()
    try:
        yield
    finally:
        try:
            ray.shutdown()
        finally:
            if reaper is not None:
                reaper.kill()
                reaper.wait()


# Watches the driver; when it is gone without shutting Ray down (kill -9, SIGTERM), it ends the
# processes the driver had started (the embedded Ray's daemons, workers and actors), so that no
# actor keeps writing into the store and nothing lingers. Runs as `python -c` so that it needs no
# import of the project or Ray. Linux only (/proc); elsewhere it does nothing.
_REAPER = r"""
import os, signal, sys, time
driver, me = int(sys.argv[1]), os.getpid()

def table():
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                out[int(name)] = (int(fields[1]), fields[19], fields[0])
            except (OSError, IndexError, ValueError):
                pass
    return out

def descendants(procs, roots):
    found, frontier = set(), set(roots)
    while frontier:
        frontier = {p for p, (parent, _, _) in procs.items() if parent in frontier} - found
        found |= frontier
    return found

known = {}
while True:
    procs = table()
    if driver not in procs or procs[driver][2] == "Z":
        break
    known = {p: procs[p][1] for p in descendants(procs, [driver]) if p != me}
    time.sleep(0.5)
procs = table()
doomed = {p for p, start in known.items() if p in procs and procs[p][1] == start}
doomed |= descendants(procs, doomed)
for pid in doomed - {me}:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
"""


def start_reaper():
    """Start the watchdog that ends the embedded Ray's processes if the driver dies without cleanup."""
    import subprocess
    import sys

    if not Path("/proc/self/stat").exists():
        return None
    return subprocess.Popen([sys.executable, "-c", _REAPER, str(os.getpid())], start_new_session=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def placeable_actors(nodes: list[dict], gpus: float, cpus: float) -> int:
    """How many actors asking for `gpus` and `cpus` each the alive `nodes` can hold at once."""
    total = 0
    for node in nodes:
        if not node.get("Alive", True):
            continue
        have = node.get("Resources", {})
        fits = [have.get("CPU", 0.0) // cpus if cpus > 0 else float("inf")]
        if gpus > 0:
            fits.append(have.get("GPU", 0.0) // gpus)
        per_node = min(fits)
        total += int(per_node) if per_node != float("inf") else 10**6
    return total


def check_placement(cluster: ClusterOptions, actors_needed: int | None = None) -> None:
    """Fail in bounded time, naming what was asked and what the cluster has, when the cluster
    cannot hold the narrator actors; a joined cluster gets `placement_timeout_s` to grow."""
    needed = min(cluster.num_actors, actors_needed or cluster.num_actors)
    deadline = time.monotonic() + (cluster.placement_timeout_s if cluster.address else 0.0)
    while True:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        if placeable_actors(nodes, cluster.gpus_per_actor, cluster.cpus_per_actor) >= needed:
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(POLL_SECONDS)
    have_gpus = sum(n.get("Resources", {}).get("GPU", 0.0) for n in nodes)
    have_cpus = sum(n.get("Resources", {}).get("CPU", 0.0) for n in nodes)
    biggest = max(nodes, key=lambda n: (n["Resources"].get("GPU", 0.0), n["Resources"].get("CPU", 0.0)), default=None)
    largest = (f"; the largest node has {biggest['Resources'].get('GPU', 0.0):g} GPU(s) and "
               f"{biggest['Resources'].get('CPU', 0.0):g} CPU(s)") if biggest else ""
    fits = placeable_actors(nodes, cluster.gpus_per_actor, cluster.cpus_per_actor)
    waited = f" after waiting {cluster.placement_timeout_s:g} s" if cluster.address else ""
    raise InputError(
        f"cluster={cluster.address or 'local'}", "",
        f"the cluster cannot place {needed} narrator actor(s) of {cluster.gpus_per_actor:g} GPU(s) and "
        f"{cluster.cpus_per_actor:g} CPU(s) each{waited}: it has {len(nodes)} node(s) with {have_gpus:g} GPU(s) and "
        f"{have_cpus:g} CPU(s) in all{largest}, room for {fits}",
        "add nodes with GPUs, or lower cluster.num_actors, cluster.gpus_per_actor (0 runs on CPUs) or "
        "cluster.cpus_per_actor")


def load_models(checkpoint: str, codec_name: str | None, device: str):
    import torch

    from moss_model.codec import load_codec
    from moss_model.loading import load_tts

    from pipeline.narration.models import resolve_on_node

    dtype = torch.bfloat16 if device == "cuda" else None
    tts = load_tts(resolve_on_node(checkpoint), dtype=dtype, device=device)  # weights fetched once per node
    codec = load_codec(resolve_on_node(codec_name or tts.codec_name), device=device)
    return tts, codec


class NarratorActor:
    """One model + codec on one device; narrates the runs it is handed."""

    def __init__(self, setup: RunSetup, store_root: str, voice: Voice | None) -> None:
        import torch

        self.device = "cuda" if torch.cuda.is_available() and setup.cluster.gpus_per_actor > 0 else "cpu"
        if self.device == "cpu":
            torch.set_num_threads(max(1, int(setup.cluster.cpus_per_actor)))
        self.tts, self.codec = load_models(setup.model.checkpoint, setup.model.codec, self.device)
        if voice is None:
            voice = encode_voice(setup.voice, self.codec, self.tts.config.n_vq)
        self.narrator = Narrator(self.tts, self.codec, voice, setup.narration, SegmentStore(store_root))
        if setup.voice.path is not None and setup.narration.quality is not None:
            # speaker similarity against the recording itself, not its codec round trip
            rate = self.codec.sample_rate
            self.narrator.reference_audio = (voice_wave(setup.voice, rate).numpy(), rate)

    def narrate(self, runs: list[RunTask]) -> list[ChapterReport]:
        return self.narrator.narrate(runs)

    def progress(self) -> dict:
        return self.narrator.progress()

    def node_id(self) -> str:
        return ray.get_runtime_context().get_node_id()


def narrate_runs(runs: list[RunTask], setup: RunSetup, store: SegmentStore, total: int) -> list[ChapterReport]:
    """All runs through the actors, with a progress bar fed from the store."""
    stored = store.keys()
    reports: list[ChapterReport] = []
    voice = None
    if setup.voice.path is None:
        voice, bootstrap_reports = _bootstrap_voice(runs, setup, store)
        reports.extend(bootstrap_reports)
        stored = store.keys()
    pending = [r for r in runs if any(s.key not in stored for s in r.segments)]
    shares = share_out(pending, min(setup.cluster.num_actors, len(pending)))
    # A dead actor (its process or its whole node lost) is restarted, on another node if need be, and
    # its call retried until the restarts run out; it rebuilds its state from the store. Errors
    # raised by the narration itself are not retried. SPREAD: one actor per node before doubling up.
    # Two threads: `progress` answers while `narrate` runs.
    options = {"num_cpus": setup.cluster.cpus_per_actor, "num_gpus": setup.cluster.gpus_per_actor,
               "max_restarts": 2, "max_task_retries": -1, "max_concurrency": 2, "scheduling_strategy": "SPREAD"}
    actor_class = ray.remote(**options)(NarratorActor)
    actors = [actor_class.remote(setup, store.root, voice) for _ in shares]
    nodes = ray.get([actor.node_id.remote() for actor in actors])
    print(f"{len(actors)} narrator actor(s) on {len(set(nodes))} node(s)", flush=True)
    est_frames = {s.key: s.est_frames for r in runs for s in r.segments}
    progress = tqdm(total=total, unit="seg", desc="narrating", dynamic_ncols=True)
    started = time.perf_counter()
    try:
        in_flight = [actor.narrate.remote(share) for actor, share in zip(actors, shares)]
        while in_flight:
            done, in_flight = ray.wait(in_flight, num_returns=1, timeout=POLL_SECONDS)
            for ref in done:
                reports.extend(ray.get(ref))
            _update(progress, store, est_frames, _engine_figures(actors, time.perf_counter() - started))
        _update(progress, store, est_frames)
    finally:
        progress.close()
        for actor in actors:
            # ray's stubs type kill's argument as ActorHandle; the handle .remote() returns is typed ActorProxy
            ray.kill(actor)  # pyright: ignore[reportArgumentType]  # frees their GPUs and CPUs for finishing
    return reports


def share_out(runs: list[RunTask], actors: int) -> list[list[RunTask]]:
    """Runs dealt to actors longest first, each to the actor with the least estimated work so far."""
    shares: list[list[RunTask]] = [[] for _ in range(actors)]
    loads = [0] * actors
    for run in sorted(runs, key=lambda r: r.est_steps(), reverse=True):
        lightest = loads.index(min(loads))
        shares[lightest].append(run)
        loads[lightest] += run.est_steps()
    return shares


def _engine_figures(actors: list, seconds: float) -> str:
    """Rows in flight, the useful-row fraction and audio seconds per second, from the actors."""
    try:
        figures = ray.get([actor.progress.remote() for actor in actors], timeout=POLL_SECONDS)
    except (GetTimeoutError, RayActorError):
        return ""  # a busy or restarting actor: the next poll will tell
    rows = sum(f["rows"] for f in figures)
    row_steps = sum(f["row_steps"] for f in figures)
    useful = f"{sum(f['useful_row_steps'] for f in figures) / row_steps:.0%}" if row_steps else "-"
    audio_per_second = sum(f["generated_seconds"] for f in figures) / max(seconds, 1e-9)
    return f"rows {rows}, useful {useful}, {audio_per_second:.1f} audio-s/s"


def _update(progress: tqdm, store: SegmentStore, est_frames: dict[str, int], engine: str = "") -> None:
    """Progress from the store itself: segments done, and about how much audio they hold."""
    stored = store.keys() & est_frames.keys()
    minutes = sum(est_frames[k] for k in stored) / DEFAULT_FRAME_RATE / 60  # planned frames: planning's rate
    progress.set_postfix_str(f"audio≈{minutes:.1f} min" + (f", {engine}" if engine else ""), refresh=False)
    progress.update(len(stored) - progress.n)


def _bootstrap_voice(runs: list[RunTask], setup: RunSetup, store: SegmentStore
                     ) -> tuple[Voice, list[ChapterReport]]:
    """No reference given: narrate the book's first segment without one; its voice is the reference."""
    first_run = min(runs, key=lambda r: (r.chapter_index, r.run_index))
    first = first_run.segments[0]
    reports = []
    if not store.has(first.key):
        actor = ray.remote(num_cpus=setup.cluster.cpus_per_actor, num_gpus=setup.cluster.gpus_per_actor)(NarratorActor)
        bootstrap = actor.remote(setup, store.root, Voice(setup.voice.voice_id, None, None))
        try:
            task = RunTask(first_run.chapter_index, first_run.run_index, first_run.title, (first,))
            reports = ray.get(bootstrap.narrate.remote([task]))
        finally:
            ray.kill(bootstrap)  # pyright: ignore[reportArgumentType]  # an ActorProxy is the handle (ray's stubs)
    segment = store.get(first.key)
    return Voice(generated_voice_id(first.key), segment.codes, first.model_text), reports


def _finish_task(setup: RunSetup, store_root: str, chapter: ChapterWork, book: BookInfo) -> FinishedChapter:
    def codec():  # only for segments stored without their audio (an older narrator's store)
        from moss_model.codec import load_codec
        from moss_model.loading import codec_name

        if setup.model.codec not in _CODECS:
            name = setup.model.codec or codec_name(Path(_resolve(setup.model.checkpoint)))
            _CODECS[setup.model.codec] = load_codec(name)
        return _CODECS[setup.model.codec]

    return finish_chapter_from_store(SegmentStore(store_root), codec, chapter.chapter_index, chapter.title,
                                     list(chapter.segments), setup.output / "chapters", setup.finish, book,
                                     chapter.stem)


_CODECS: dict = {}  # one codec per finishing worker process


def _resolve(checkpoint: str) -> str:
    from moss_model.checkpoint import resolve_checkpoint

    return str(resolve_checkpoint(checkpoint))


def finish_chapters(chapters: list[ChapterWork], book: BookInfo, setup: RunSetup,
                    store: SegmentStore) -> list[FinishedChapter]:
    """Finish every chapter in a CPU task of its own, in parallel; in the order given.

    The tasks run on the driver's node: they write the chapter files into the output folder there
    (for an object-storage output, its staging folder), which the M4B and the index are built from.
    """
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    # ray.remote's overloads list only the placement-group strategy; ray takes a node-affinity one too
    task = ray.remote(num_cpus=setup.cluster.finish_cpus,
                      scheduling_strategy=here)(_finish_task)  # pyright: ignore[reportArgumentType]
    refs = [task.remote(setup, store.root, chapter, book) for chapter in chapters]
    with tqdm(total=len(refs), unit="chapter", desc="finishing", dynamic_ncols=True) as progress:
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            progress.update(len(done))
    return ray.get(refs)


# --- datasets (job=synthesize) -----------------------------------------------------------


@dataclass(frozen=True)
class SynthesizerArgs:
    """What each synthesizer actor is built from."""

    model: ModelChoice
    cluster: ClusterOptions
    voices: dict[str, VoiceSpec]
    synth: SynthOptions
    store_root: str


class SynthesizerWorker:
    """The Ray Data actor: one model + codec, every voice encoded once, the continuous engine."""

    def __init__(self, args: SynthesizerArgs) -> None:
        import torch

        from pipeline.dataset.results import ResultStore
        from pipeline.dataset.synth import DatasetSynthesizer

        device = "cuda" if torch.cuda.is_available() and args.cluster.gpus_per_actor > 0 else "cpu"
        if device == "cpu":
            torch.set_num_threads(max(1, int(args.cluster.cpus_per_actor)))
        tts, codec = load_models(args.model.checkpoint, args.model.codec, device)
        self.synthesizer = DatasetSynthesizer(tts, codec, args.voices, args.synth, ResultStore(args.store_root))

    def __call__(self, batch):
        import pyarrow as pa

        return pa.Table.from_pylist(self.synthesizer.synthesize(batch.to_pylist()))


def synthesized_rows(manifest_file: Path, columns: list[str], shards: set[int] | None, worker: SynthesizerArgs,
                     batch_rows: int) -> Iterator[list[dict]]:
    """The manifest's rows (of `shards`, or all) through a pool of `cluster.num_actors`
    synthesizer actors with Ray Data; their result rows, batch by batch, as they come."""
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.execution_options.verbose_progress = False
    cluster = worker.cluster
    # Reading the manifest and cutting shards are light and take no CPU slot: with every CPU held by an
    # actor (2 actors on 2 cores), a read or write that waited for one would stall the pipeline.
    dataset = ray.data.read_parquet(str(manifest_file), num_cpus=0).select_columns(columns)
    if shards is not None:
        with warnings.catch_warnings():  # a predicate on one small column; expressions differ between Ray versions
            warnings.simplefilter("ignore", UserWarning)
            dataset = dataset.filter(lambda row: row["shard"] in shards)
    dataset = dataset.map_batches(
        SynthesizerWorker, fn_constructor_kwargs={"args": worker}, batch_size=batch_rows, batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=cluster.num_actors), num_cpus=cluster.cpus_per_actor,
        num_gpus=cluster.gpus_per_actor or None)
    for batch in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
        # ray's stubs type every batch as a dict of arrays; batch_format="pyarrow" gives a pyarrow Table
        yield batch.to_pylist()  # pyright: ignore[reportAttributeAccessIssue]


def start_light_task(function: Callable[..., Any], *args: Any) -> Any:
    """`function(*args)` as a Ray task that takes no CPU slot (light I/O beside busy actors), on the
    driver's node: it writes into the output folder there."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    # ray.remote's overloads list only the placement-group strategy; ray takes a node-affinity one too
    return ray.remote(num_cpus=0, scheduling_strategy=here)(function).remote(*args)  # pyright: ignore[reportArgumentType]


def wait_for(tasks: list) -> list:
    """The results of tasks started here, once all are done."""
    return ray.get(tasks)
