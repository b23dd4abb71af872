"""Weights resolved once per machine: several actor processes of one node ask for the same model at
once; the first resolves it (the hub download is what this machine cannot have: a stand-in resolver
that counts its calls and takes a while stands for it), the others wait and reuse its answer."""

import multiprocessing
import time
from pathlib import Path

from pipeline.narration.models import resolve_on_node


def slow_resolver(calls_file: str, folder: str):
    def resolve(name: str) -> Path:
        with open(calls_file, "a") as handle:
            handle.write(name + "\n")
        time.sleep(0.5)  # a download
        Path(folder).mkdir(exist_ok=True)
        return Path(folder)
    return resolve


def actor(cache: str, calls_file: str, folder: str, out: str) -> None:
    import os

    os.environ["MOSS_NARRATOR_CACHE"] = cache
    Path(out).write_text(str(resolve_on_node("OpenMOSS-Team/MOSS-TTS", slow_resolver(calls_file, folder))))


def test_four_actors_of_a_node_resolve_the_weights_once(tmp_path):
    calls, folder = tmp_path / "calls.txt", tmp_path / "weights"
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=actor, args=(str(tmp_path / "cache"), str(calls), str(folder),
                                                     str(tmp_path / f"out{i}"))) for i in range(4)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(30)
        assert p.exitcode == 0
    assert calls.read_text().splitlines() == ["OpenMOSS-Team/MOSS-TTS"]
    assert {(tmp_path / f"out{i}").read_text() for i in range(4)} == {str(folder)}


def test_a_recorded_folder_that_is_gone_is_resolved_again(tmp_path, monkeypatch):
    monkeypatch.setenv("MOSS_NARRATOR_CACHE", str(tmp_path / "cache"))
    calls, folder = tmp_path / "calls.txt", tmp_path / "weights"
    assert resolve_on_node("a/b", slow_resolver(str(calls), str(folder))) == folder
    assert resolve_on_node("a/b", slow_resolver(str(calls), str(folder))) == folder
    folder.rmdir()  # the cache was cleaned
    assert resolve_on_node("a/b", slow_resolver(str(calls), str(folder))) == folder
    assert calls.read_text().splitlines() == ["a/b", "a/b"]
