"""Finding checkpoint folders and moving weights between safetensors files and modules.

A checkpoint is a folder with `config.json` and either `model.safetensors` or shards listed in
`model.safetensors.index.json`. Modules are built on the meta device, so an 8B model never
exists twice in memory: parameters are allocated once on the target device and filled from the
files shard by shard, with a strict check of key names and shapes.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol, TypeVar, runtime_checkable

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
CONFIG_FILE = "config.json"
HUB_FILE_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "*.jinja"]
ModuleT = TypeVar("ModuleT", bound=nn.Module)
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


@runtime_checkable
class RemapsCheckpoint(Protocol):
    """A module whose parameters are laid out differently from the checkpoint files."""

    def checkpoint_tensors(self) -> dict[str, torch.Tensor]:
        """Checkpoint key -> a view of the module's parameters that the file's tensor fills."""
        ...


@runtime_checkable
class HasNonPersistentBuffers(Protocol):
    """A module with buffers that are not in the files and are computed after loading."""

    def init_non_persistent_buffers(self) -> None: ...


class CheckpointError(ValueError):
    """A checkpoint folder, hub id or weight file that cannot be used, with the reason."""


def resolve_checkpoint(name_or_path: str | os.PathLike, revision: str | None = None) -> Path:
    """Return the local folder of a checkpoint given a folder path or a Hugging Face hub id.

    Hub ids go through `huggingface_hub.snapshot_download`, so its cache and
    `HF_HUB_OFFLINE=1` are honoured.
    """
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise CheckpointError(f"checkpoint path {path} is a file; pass the folder that holds {CONFIG_FILE}")
        if not (path / CONFIG_FILE).is_file():
            raise CheckpointError(
                f"{path} is not a checkpoint folder: it has no {CONFIG_FILE}. "
                "Pass the folder that holds config.json and the safetensors files."
            )
        return path
    looks_like_path = text.startswith((".", "/", "~")) or os.sep in text.strip("/").replace("/", "", 1)
    if looks_like_path or not _HUB_ID.match(text):
        raise CheckpointError(
            f"checkpoint {text!r} is neither an existing folder nor a hub id of the form owner/name"
        )
    return _download_from_hub(text, revision)


def _download_from_hub(repo_id: str, revision: str | None) -> Path:
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(repo_id, revision=revision, allow_patterns=HUB_FILE_PATTERNS)
    except Exception as error:  # the hub library raises many kinds; all mean "not available"
        raise CheckpointError(
            f"could not get {repo_id!r} (revision {revision or 'main'}) from the Hugging Face hub "
            f"or its local cache: {type(error).__name__}: {error}. Download it where there is "
            "network (huggingface-cli download) and pass the local folder instead."
        ) from error
    return Path(folder)


def read_json(path: Path) -> dict:
    """Read a JSON file, turning a missing or broken file into a CheckpointError."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError as error:
        raise CheckpointError(f"{path} is missing") from error
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path} is not valid JSON: {error}") from error


def weight_files(folder: Path) -> dict[str, Path]:
    """Map every tensor key of the checkpoint to the safetensors file that holds it."""
    index_path = folder / INDEX_FILE
    single_path = folder / SINGLE_FILE
    if index_path.is_file():
        index = read_json(index_path)
        weight_map = index.get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise CheckpointError(f"{index_path} has no 'weight_map'")
        files = {name: folder / name for name in sorted(set(weight_map.values()))}
        missing = [name for name, file in files.items() if not file.is_file()]
        if missing:
            raise CheckpointError(
                f"checkpoint {folder} is incomplete: shard(s) {', '.join(missing)} listed in {INDEX_FILE} "
                "are missing. Download the checkpoint again."
            )
        return {key: files[name] for key, name in weight_map.items()}
    if single_path.is_file():
        with safe_open(single_path, framework="pt") as handle:
            return {key: single_path for key in handle.keys()}
    raise CheckpointError(f"checkpoint {folder} has no {SINGLE_FILE} and no {INDEX_FILE}")


def destination_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors a checkpoint fills, by checkpoint key.

    A module whose parameters are laid out differently from the files (stacked heads, say)
    defines `checkpoint_tensors()` returning views of its parameters under the file's keys.
    """
    if isinstance(module, RemapsCheckpoint):
        return module.checkpoint_tensors()
    return {key: tensor for key, tensor in module.state_dict(keep_vars=True).items()}


def _check_keys_and_shapes(folder: Path, expected: dict[str, torch.Tensor], found: dict[str, Path]) -> None:
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_preview(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {_preview(unexpected)}")
    if problems:
        raise CheckpointError(
            f"checkpoint {folder} does not match the model ({'; '.join(problems)}). "
            "Is this the right checkpoint for this model type and config?"
        )
    shapes = _file_shapes(found)
    wrong = [
        f"{key}: file {list(shapes[key])} vs model {list(expected[key].shape)}"
        for key in sorted(expected)
        if tuple(shapes[key]) != tuple(expected[key].shape)
    ]
    if wrong:
        raise CheckpointError(f"checkpoint {folder} has {len(wrong)} shape mismatch(es): {_preview(wrong)}")


def _file_shapes(found: dict[str, Path]) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for file, keys in _keys_by_file(found).items():
        with safe_open(file, framework="pt") as handle:
            for key in keys:
                shapes[key] = tuple(handle.get_slice(key).get_shape())
    return shapes


def _keys_by_file(found: dict[str, Path]) -> dict[Path, list[str]]:
    by_file: dict[Path, list[str]] = {}
    for key, file in found.items():
        by_file.setdefault(file, []).append(key)
    return by_file


def _preview(items: list[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def load_model(
    build: Callable[[], ModuleT],
    folder: str | os.PathLike,
    *,
    dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
) -> ModuleT:
    """Build a module without initializing weights and fill it from a checkpoint folder.

    `dtype` applies to floating-point tensors only (None keeps float32).
    """
    folder = Path(folder)
    device = torch.device(device)
    with torch.device("meta"):
        module = build()
    if dtype is not None:
        module.to(dtype=dtype)
    module.to_empty(device=device)
    expected = destination_tensors(module)
    found = weight_files(folder)
    _check_keys_and_shapes(folder, expected, found)
    with torch.no_grad():
        for file, keys in _keys_by_file(found).items():
            with safe_open(file, framework="pt", device=str(device)) as handle:
                for key in keys:
                    expected[key].copy_(handle.get_tensor(key))
    loaded = module.eval()
    if isinstance(module, HasNonPersistentBuffers):
        module.init_non_persistent_buffers()
    return loaded


def save_weights(module: nn.Module, folder: str | os.PathLike, max_shard_bytes: int = 4 << 30) -> None:
    """Write a module's weights under checkpoint key names, sharded with an index when large."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {key: t.detach().contiguous().cpu().clone() for key, t in destination_tensors(module).items()}
    shards = list(_split_into_shards(tensors, max_shard_bytes))
    if len(shards) == 1:
        save_file(shards[0], folder / SINGLE_FILE, metadata={"format": "pt"})
        return
    weight_map: dict[str, str] = {}
    total = 0
    for number, shard in enumerate(shards, start=1):
        name = f"model-{number:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, folder / name, metadata={"format": "pt"})
        weight_map.update({key: name for key in shard})
        total += sum(t.numel() * t.element_size() for t in shard.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / INDEX_FILE).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _split_into_shards(tensors: dict[str, torch.Tensor], max_shard_bytes: int) -> Iterable[dict[str, torch.Tensor]]:
    shard: dict[str, torch.Tensor] = {}
    size = 0
    for key in sorted(tensors):
        tensor = tensors[key]
        nbytes = tensor.numel() * tensor.element_size()
        if shard and size + nbytes > max_shard_bytes:
            yield shard
            shard, size = {}, 0
        shard[key] = tensor
        size += nbytes
    if shard:
        yield shard
