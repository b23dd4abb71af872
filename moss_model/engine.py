"""The continuous-batching engine: a fixed pool of row slots that requests join and leave at any step.

Each slot owns a region of the KV cache (from slot 0, no padding), a position, the state
machine of the text channel, a seed, a frame limit and decoding settings. `submit` queues a
request; `step` admits queued requests into free slots (prefill), samples one row for every
slot, hands back each request the moment it ends, and runs one decode step for the whole pool.
Inactive slots are computed and ignored, so the decode step's shapes never change with
occupancy: on CUDA its graphs are recorded once per attention window.

The text channel of each row follows the state machine of the released model (see the spec):

  outside audio  -> sample text (pad, slots and <|audio_end|> forbidden); <|audio_start|> enters audio
  inside audio   -> sample only the generation slot or the delay slot
  delay slot     -> n_vq-1 forced delay slots, then a forced <|audio_end|>, then text again
  <|im_end|>     -> the row stops

Codebook k is sampled from k+1 steps after <|audio_start|> until k steps after the delay slot.

A row's frames never depend on the schedule. Everything a row computes has a shape fixed by
the engine (its shared head is prefilled alone, in chunks of `prefill_chunk` tokens, or comes
from the prefix cache; the rest of its prompt in chunks aligned to the end of the head, one of
`prefill_rows` rows whose heads have that length; its decode row is one of `capacity`), its random
numbers come from its own seed and step, its limits are its own, and attention sees only its
own region. A row is therefore bit-identical whatever else shares the pool and whenever it was
admitted; on CPU also whatever the capacity (tested), on CUDA for one capacity (the GEMM
kernel may change with the batch size).

Inside audio a row chooses between two slot tokens; only outside audio does it sample free text
over the whole text vocabulary, whose head is the largest matmul of a small step. The host
knows from the state machine which rows may sample free text on a step (a row inside audio
cannot for n_vq+1 steps; a row whose audio its frame limit closed ends with a forced <|im_end|>),
and the text head runs for just those rows, `free_text_rows` at a time (a fixed shape again,
whatever the capacity, so a row's logits never depend on how many others needed the head).

The host reads the device only at checks: when some row may have sampled free text (only then
can it stop), when a row reaches its step limit, and at most every `check_every` steps.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from moss_model.backbone import EAGER_KERNELS, KVCache, compiled_layer_kernels
from moss_model.decoders import StepGraphs, resolve_compile_layers, resolve_decode_mode, round_to_window
from moss_model.model import MossTTSDelayModel, StepLogits
from moss_model.processor import MossTTSProcessor, Prompt
from moss_model.sampling import (
    DecodingParams,
    RowSamplingParams,
    SamplingPlan,
    apply_row_repetition_penalty,
    row_keys,
    sample_rows,
    step_keys,
)

NOT_DELAYING = -1
TEXT_STEPS_ALLOWANCE = 16  # text tokens a row may spend outside audio before and after its audio
# Prompt tokens per prefill forward, and prompts prefilled together. A forward of several rows
# reads the weights once, and the rows admitted on one step are often that many. Each prompt's
# last chunk is padded to full length, so shorter chunks waste fewer positions. 4 rows of 64 are
# 256 positions, about the ridge of an H100 or H200 in bf16 (a forward does one FLOP per weight
# byte per position; the ridge is about 300 FLOP per byte on an H100, 200 on an H200), so such a
# forward costs about what reading the weights costs and the padding saved is mostly time saved.
# The 8B bench's prompts (303-token head, 141 more tokens) run 192 positions a row in chunks of
# 64 against 256 in chunks of 128. Not yet timed on a GPU: bench/cuda_check.sh prices the two.
PREFILL_CHUNK = 64
PREFILL_ROWS = 4
# Prompt tokens a running pool prefills on one step: a whole admission group of long segments
# (the others wait one step for it, not more).
ADMIT_TOKENS_PER_STEP = 1024
# Rows per run of the whole text head. Reading its weights dominates on CUDA and CPU alike, so a
# run of 8 rows costs little more than a run of 1 (CPU, 151936 x 64 in float32: 5.7 ms against
# 4.5 ms). The size is the same whatever the capacity, so a row's logits never depend on it.
FREE_TEXT_ROWS = 8
DEFAULT_MAX_ROW_TOKENS = 2048  # KV slots per row: prompt + generated rows
DEFAULT_PREFIX_CACHE_BYTES = 1 << 30
CPU_CAPACITY = 8  # slots on CPU when neither capacity nor budget is given: a CPU step costs in proportion to its rows
CUDA_MEMORY_FRACTION = 0.8  # of the free device memory, when neither is given
NEVER = 1 << 40
ADMISSION_ORDERS = ("fifo", "longest_first")


@dataclass
class RowResult:
    """What one request produced."""

    frames: torch.Tensor  # F, n_vq: the new audio (continuation prefix excluded)
    audio_runs: list[torch.Tensor]  # every run of audio the row produced (frames is the first)
    rows: torch.Tensor  # G, 1+n_vq: the generated rows, through the stop
    finished: bool  # ended with <|im_end|>
    hit_frame_limit: bool  # audio was closed by max_new_frames


@dataclass
class Finished:
    request_id: int
    result: RowResult


@dataclass
class EngineStats:
    steps: int = 0  # pool steps (one sampled row per slot, one decode)
    row_steps: int = 0  # steps x capacity
    useful_row_steps: int = 0  # row-steps of admitted rows that had not yet ended
    attention_slots: int = 0  # cache slots the decode steps' attention spanned (window x capacity a step)
    attention_slots_used: int = 0  # of those, the slots that hold tokens of rows that had not yet ended
    prefill_tokens: int = 0  # prompt tokens computed
    prefill_positions: int = 0  # positions the prefill forwards ran: those tokens and the padding of fixed shapes
    prefix_cache_tokens: int = 0  # prompt tokens whose KV came from the prefix cache
    admissions: int = 0
    text_head_rows: int = 0  # rows run through the whole text head (runs x free_text_rows)
    host_checks: int = 0  # times the host waited to read row states
    prefill_seconds: float = 0.0
    step_seconds: float = 0.0  # sampling and decoding (the host does not wait per step, so on
    #                            CUDA this is launch time until the next check)

    @property
    def useful_fraction(self) -> float:
        return self.useful_row_steps / self.row_steps if self.row_steps else 0.0

    @property
    def attention_used_fraction(self) -> float:
        """The share of the cache slots decode attention spans that rows need: every row spans the
        longest row's window, so a pool of rows at different stages reads much of its KV masked."""
        return self.attention_slots_used / self.attention_slots if self.attention_slots else 0.0

    @property
    def prefix_cache_saved_fraction(self) -> float:
        total = self.prefill_tokens + self.prefix_cache_tokens
        return self.prefix_cache_tokens / total if total else 0.0


@dataclass
class _Request:
    id: int
    prompt: Prompt
    seed: int
    decoding: DecodingParams
    max_new_frames: int
    step_limit: int  # rows a request may generate: its frames, the delay tail and some text
    head: int  # its shared head's length (see _shared_head)
    head_key: str  # the prefix cache's key of that head ("" when it has none), hashed once on the host


@dataclass
class _Row:
    """The host's view of an occupied slot."""

    request: _Request
    admitted_at: int  # the pool step of its first sampled row
    prompt_length: int


@dataclass
class _PrefixEntry:
    keys: torch.Tensor  # layers, kv_heads, L, head_dim
    values: torch.Tensor

    @property
    def nbytes(self) -> int:
        return 2 * self.keys.numel() * self.keys.element_size()


@dataclass
class PrefixCache:
    """KV of shared prompt heads (chat head + voice reference), keyed by their ids, least recently used out."""

    max_bytes: int
    entries: OrderedDict[str, _PrefixEntry] = field(default_factory=OrderedDict)

    @staticmethod
    def key(ids: torch.Tensor) -> str:
        return hashlib.sha256(ids.to(torch.int64).contiguous().numpy().tobytes()).hexdigest()

    def get(self, key: str) -> _PrefixEntry | None:
        entry = self.entries.get(key)
        if entry is not None:
            self.entries.move_to_end(key)
        return entry

    def put(self, key: str, entry: _PrefixEntry) -> None:
        if entry.nbytes > self.max_bytes:
            return
        self.entries[key] = entry
        while sum(e.nbytes for e in self.entries.values()) > self.max_bytes:
            self.entries.popitem(last=False)


def _shared_head(prompt: Prompt) -> int:
    """Leading prompt tokens whose KV the prefix cache may hold (at least the last token is
    computed: its logits are needed)."""
    return min(prompt.shared_length, prompt.ids.shape[0] - 1)


def prefill_end(prompt: Prompt, prefill_chunk: int) -> int:
    """One past the last KV slot the chunked prefill writes (chunks are padded to full length):
    chunks aligned to 0 over the shared head, then to its end over the rest."""
    shared = _shared_head(prompt)
    rest = prompt.ids.shape[0] - shared
    return max(math.ceil(shared / prefill_chunk) * prefill_chunk, shared + math.ceil(rest / prefill_chunk) * prefill_chunk)


def step_limit(max_new_frames: int, n_vq: int) -> int:
    """Rows a request may generate: its frames, the delay tail and some text around them."""
    return max_new_frames + n_vq + 2 * TEXT_STEPS_ALLOWANCE


def request_tokens(prompt: Prompt, max_new_frames: int, n_vq: int, prefill_chunk: int = PREFILL_CHUNK) -> int:
    """KV slots a request needs in its row."""
    return max(prefill_end(prompt, prefill_chunk), prompt.ids.shape[0] + step_limit(max_new_frames, n_vq))


def kv_bytes_per_token(model: MossTTSDelayModel) -> int:
    b = model.config.backbone
    return 2 * b.num_hidden_layers * b.num_key_value_heads * b.head_dim * model.dtype.itemsize


def row_bytes(model: MossTTSDelayModel, max_row_tokens: int) -> int:
    """Device memory one slot holds: its KV region, its output rows, its logits and seen codes."""
    c = model.config
    logits = (2 + c.backbone.vocab_size + c.n_vq * (c.audio_vocab_size + 1)) * model.dtype.itemsize
    working = 4 * (c.backbone.vocab_size + c.n_vq * (c.audio_vocab_size + 1)) * 4  # float32 copies while sampling
    seen = c.n_vq * (c.audio_vocab_size + 1)
    out = (max_row_tokens + 1) * (1 + c.n_vq) * 8
    return kv_bytes_per_token(model) * max_row_tokens + logits + working + seen + out


def capacity_for_memory(
    model: MossTTSDelayModel, max_row_tokens: int, budget_bytes: int, prefill_rows: int = PREFILL_ROWS
) -> int:
    """How many slots of `max_row_tokens` fit in `budget_bytes` (at least one), beside the prefill's scratch rows."""
    scratch = prefill_rows * kv_bytes_per_token(model) * max_row_tokens
    return max(1, (budget_bytes - scratch) // row_bytes(model, max_row_tokens))


class Engine:
    """A pool of `capacity` row slots of `max_row_tokens` KV slots each.

    capacity: given, or from `memory_budget_bytes` (default: 80% of the free CUDA memory less the
    prefix cache; on CPU 8 slots). decode_mode / compile_layers: see `moss_model.decoders`. prefill_chunk:
    prompt tokens per prefill forward; prefill_rows: prompts per prefill forward. prefix_cache_bytes: room for the KV of shared prompt
    heads. check_every: the fewest steps between two reads of the row states (1 retires rows
    at once; more saves host waits at the cost of slots idling until the next check).
    admit_tokens_per_step: prompt tokens prefilled per step while other rows decode, so that
    admissions never stall the pool for long (an empty pool admits without limit).
    free_text_rows: rows per run of the whole text head (default 8). admission: which queued request takes
    a free slot: 'fifo' (the order of submission) or 'longest_first' (the largest max_new_frames,
    so that a bulk job's last rows are short and the pool drains quickly).
    """

    def __init__(
        self,
        model: MossTTSDelayModel,
        processor: MossTTSProcessor,
        capacity: int | None = None,
        *,
        max_row_tokens: int = DEFAULT_MAX_ROW_TOKENS,
        memory_budget_bytes: int | None = None,
        decode_mode: str = "auto",
        compile_layers: bool | None = None,
        prefill_chunk: int = PREFILL_CHUNK,
        prefill_rows: int = PREFILL_ROWS,
        prefix_cache_bytes: int = DEFAULT_PREFIX_CACHE_BYTES,
        check_every: int = 1,
        admit_tokens_per_step: int = ADMIT_TOKENS_PER_STEP,
        free_text_rows: int | None = None,
        admission: str = "fifo",
    ) -> None:
        if free_text_rows is None:
            free_text_rows = FREE_TEXT_ROWS
        if min(max_row_tokens, prefill_chunk, prefill_rows, check_every, admit_tokens_per_step, free_text_rows) < 1:
            raise ValueError(
                "max_row_tokens, prefill_chunk, prefill_rows, check_every, admit_tokens_per_step and free_text_rows "
                "must be at least 1"
            )
        if admission not in ADMISSION_ORDERS:
            raise ValueError(f"admission must be one of {', '.join(ADMISSION_ORDERS)}, got {admission!r}")
        self.admission = admission
        self.model = model
        self.processor = processor
        c = self.config = model.config
        device = self.device = model.device
        self.decode_mode = resolve_decode_mode(decode_mode, device, bool(compile_layers))
        self.compile_layers = resolve_compile_layers(compile_layers, self.decode_mode)
        self.kernels = compiled_layer_kernels() if self.compile_layers else EAGER_KERNELS
        self.max_row_tokens = round_to_window(max_row_tokens)
        if capacity is None and memory_budget_bytes is None and device.type != "cuda":
            capacity = CPU_CAPACITY
        if capacity is None:
            if memory_budget_bytes is None:
                free, _ = torch.cuda.mem_get_info(device)
                memory_budget_bytes = int(free * CUDA_MEMORY_FRACTION) - prefix_cache_bytes
            capacity = capacity_for_memory(model, self.max_row_tokens, memory_budget_bytes, prefill_rows)
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self.prefill_chunk = prefill_chunk
        self.prefill_rows = prefill_rows
        # Free slots a running pool waits for before admitting: a prefill group, but at most an
        # eighth of the pool (a slot waiting idles; a small pool would idle too much).
        self.admission_group = min(prefill_rows, max(1, capacity // 8))
        self._scratch: KVCache | None = None  # prefill_rows rows of KV for prompts being prefilled
        self.check_every = check_every
        self.admit_tokens_per_step = admit_tokens_per_step
        self.free_text_rows = free_text_rows
        self.prefix_cache = PrefixCache(prefix_cache_bytes)
        self.stats = EngineStats()
        self.n_vq = c.n_vq
        B, C = capacity, 1 + c.n_vq

        self.cache = model.allocate_cache(B, self.max_row_tokens)
        self.codebooks = torch.arange(c.n_vq, device=device)
        self.slot_ids = torch.tensor([c.audio_assistant_gen_slot_token_id, c.audio_assistant_delay_slot_token_id], device=device)
        self.free_text_forbidden = torch.tensor(
            [c.pad_token_id, c.audio_assistant_gen_slot_token_id, c.audio_assistant_delay_slot_token_id, c.audio_end_token_id],
            device=device,
        )
        # Per-slot state, updated in place (recorded steps read and write the same buffers).
        def longs(*shape: int) -> torch.Tensor:
            return torch.zeros(shape, dtype=torch.long, device=device)

        def flags(*shape: int) -> torch.Tensor:
            return torch.zeros(shape, dtype=torch.bool, device=device)

        self.active = flags(B)
        self.stopped = flags(B)
        self.in_audio = flags(B)
        self.audio_len = longs(B)  # rows since <|audio_start|>, counting it
        self.delay = torch.full((B,), NOT_DELAYING, dtype=torch.long, device=device)
        self.new_frames = longs(B)
        self.forced_close = flags(B)
        self.max_new_frames = longs(B)
        self.step_limit = longs(B)
        self.row_step = longs(B)  # rows sampled so far
        self.prompt_length = longs(B)
        self.keys = longs(B)
        self.useful = longs()
        self.attention_used = longs()  # the count of stats.attention_slots_used, read at checks
        self.text_params = RowSamplingParams(B, device)
        self.audio_params = RowSamplingParams(B, device)
        self.seen: torch.Tensor | None = None  # B, n_vq, audio_vocab+1: allocated for the first penalized row
        # The step's inputs and outputs.
        self.slots = longs(B)  # each row's cache slot for its next token (= its position)
        self.last_row = longs(B, 1, C)
        self.out = longs(B, self.max_row_tokens + 1, C)  # generated rows; the last column is scratch
        self.hidden = torch.zeros(B, c.backbone.hidden_size, dtype=model.dtype, device=device)  # each row's last
        self.logits = StepLogits(
            slots=torch.zeros(B, 2, dtype=model.dtype, device=device),
            audio=torch.zeros(B, c.n_vq, c.audio_vocab_size + 1, dtype=model.dtype, device=device),
        )
        # Ranks rows for the whole text head: those that sample free text first, then by slot; the
        # ranking is padded to whole runs, and a padding entry stands for a row computed twice.
        runs = -(-B // self.free_text_rows)
        self.slot_order = torch.arange(runs * self.free_text_rows, 0, -1, device=device)
        self.decode_graphs = StepGraphs(device, "decode step", on_failure=self._drop_compiled_kernels)
        self.sampling_graphs = StepGraphs(device, "sampling step")

        # Host side.
        self._queue: list[tuple[int, int, _Request]] = []  # a heap: (priority, id, request)
        self._rows: dict[int, _Row] = {}  # slot -> row
        self._free: list[int] = list(range(B - 1, -1, -1))  # popped from the end: lowest slot first
        self._next_id = 0
        self._step = 0  # the next pool step
        self._check_at = NEVER  # check after sampling at this step
        self._last_check = -1
        # Per slot, for the host's arithmetic without a loop over rows (+-NEVER when free):
        self._limit_step = np.full(B, NEVER, dtype=np.int64)  # the step at which the row reaches its step limit
        self._free_text_step = np.full(B, NEVER, dtype=np.int64)  # the first step at which it may sample free text
        self._closing = np.zeros(B, dtype=bool)  # its audio was closed by its frame limit: its text ends with a forced <|im_end|>
        self._end_offset = np.full(B, -NEVER, dtype=np.int64)  # prompt_length - admitted_at: the row's slot is this + step
        self._plans: tuple[SamplingPlan, SamplingPlan, SamplingPlan] | None = None

    # ---------------------------------------------------------------- requests

    def submit(
        self, prompt: Prompt, seed: int, decoding: DecodingParams = DecodingParams(), max_new_frames: int = 1500
    ) -> int:
        """Queue a request; its id comes back with its result."""
        if max_new_frames < 1:
            raise ValueError(f"max_new_frames must be at least 1, got {max_new_frames}")
        limit = step_limit(max_new_frames, self.n_vq)
        needed = request_tokens(prompt, max_new_frames, self.n_vq, self.prefill_chunk)
        if needed > self.max_row_tokens:
            raise ValueError(
                f"the request needs {needed} KV slots (a prompt of {prompt.ids.shape[0]} tokens, prefilled in chunks of "
                f"{self.prefill_chunk}, and up to {limit} generated rows for max_new_frames={max_new_frames}), "
                f"but this engine's rows hold {self.max_row_tokens}: build the Engine with max_row_tokens >= {needed}, "
                "or shorten the prompt or max_new_frames"
            )
        head = _shared_head(prompt)
        head_key = PrefixCache.key(prompt.ids[:head]) if head else ""
        request = _Request(self._next_id, prompt, int(seed), decoding, max_new_frames, limit, head, head_key)
        self._next_id += 1
        priority = -max_new_frames if self.admission == "longest_first" else 0
        heapq.heappush(self._queue, (priority, request.id, request))
        return request.id

    @property
    def busy(self) -> bool:
        """Requests are queued or in the pool."""
        return bool(self._queue or self._rows)

    @property
    def occupancy(self) -> int:
        return len(self._rows)

    @property
    def queued(self) -> int:
        return len(self._queue)

    def reset_stats(self) -> None:
        """Start the counts afresh (the useful-row and attention counts live on the device)."""
        self.stats = EngineStats()
        self.useful.zero_()
        self.attention_used.zero_()

    def run(self) -> Iterator[Finished]:
        """Step until every submitted request has ended, yielding each as it ends."""
        while self.busy:
            yield from self.step()

    @torch.inference_mode()
    def step(self) -> list[Finished]:
        """Admit what fits, sample one row per slot, retire rows that ended, decode the next step."""
        self._admit()
        if not self._rows:
            return []
        started = time.perf_counter()
        step = self._step
        self._sample(int(np.count_nonzero((self._free_text_step <= step) & ~self._closing)))
        self._step += 1
        self.stats.steps += 1
        self.stats.row_steps += self.capacity
        finished = self._check(step) if step >= self._check_at else []
        if self._rows:
            self._decode()
        self.stats.step_seconds += time.perf_counter() - started
        return finished

    # ---------------------------------------------------------------- admission

    def _admit(self) -> None:
        """Move queued requests into free slots and prefill them.

        A running pool admits whole groups: it waits until `admission_group` slots are free (or
        as many as requests are queued), so that a prefill forward and a run of the text head
        serve several rows rather than one padded one. The wait costs a few idle row-steps.
        """
        running = bool(self._rows)
        if running and len(self._free) < min(self.admission_group, len(self._queue)):
            return
        budget = self.admit_tokens_per_step if running else NEVER
        admitted: list[tuple[int, _Request]] = []
        heads: set[str] = set()  # shared heads this admission computes (later ones reuse them)
        while self._queue and self._free and budget > 0:
            _, _, request = heapq.heappop(self._queue)
            admitted.append((self._free.pop(), request))
            budget -= request.prompt.ids.shape[0] - request.head
            key = request.head_key
            if key and key not in heads and key not in self.prefix_cache.entries:
                heads.add(key)
                budget -= request.head
        if not admitted:
            return
        started = time.perf_counter()
        self._prefill(admitted)
        self.stats.prefill_seconds += time.perf_counter() - started
        for slot, request in admitted:
            self._start_row(slot, request)

    def _prefill(self, admitted: list[tuple[int, _Request]]) -> None:
        """Write the prompts' KV into their slots' regions and their last logits into their slots' rows.

        Requests whose shared heads have the same length are prefilled together, `prefill_rows`
        at a time: each head's KV comes from the prefix cache (computed alone on a miss), then
        the rest of every prompt runs in chunks of [prefill_rows, prefill_chunk] aligned to the
        end of the head, in a scratch cache whose rows are copied into the slots. Shapes depend
        only on the head's length, so a row's KV never depends on its companions.
        """
        by_head: dict[int, list[tuple[int, _Request]]] = {}
        for slot, request in admitted:
            by_head.setdefault(request.head, []).append((slot, request))
        P = self.prefill_rows
        for head, members in by_head.items():
            for first in range(0, len(members), P):
                self._prefill_rows(head, members[first : first + P])

    def _prefill_rows(self, head: int, members: list[tuple[int, _Request]]) -> None:
        """Up to `prefill_rows` prompts whose shared heads are `head` tokens long (see `_prefill`)."""
        c, chunk, P = self.config, self.prefill_chunk, self.prefill_rows
        scratch = self._prefill_scratch()
        prompts = [request.prompt.ids.to(self.device) for _, request in members]
        for row, (_, request) in enumerate(members):
            if head:
                entry = self._head_entry(request, scratch, row)
                scratch.keys[:, row, :, :head] = entry.keys
                scratch.values[:, row, :, :head] = entry.values
        hidden = torch.zeros(P, c.backbone.hidden_size, dtype=self.model.dtype, device=self.device)
        for row, last in enumerate(self._prefill_chunks(scratch, prompts, head)):
            hidden[row] = last
        logits = self.model.step_logits(hidden, self.slot_ids)
        for row, (slot, request) in enumerate(members):
            # The padded chunks' slots too: the row's own positions overwrite them.
            end = prefill_end(request.prompt, chunk)
            self.cache.keys[:, slot, :, :end] = scratch.keys[:, row, :, :end]
            self.cache.values[:, slot, :, :end] = scratch.values[:, row, :, :end]
            self.hidden[slot] = hidden[row]
            self.logits.slots[slot] = logits.slots[row]
            self.logits.audio[slot] = logits.audio[row]
        self.stats.prefill_tokens += sum(p.shape[0] - head for p in prompts)

    def _head_entry(self, request: _Request, scratch: KVCache, row: int) -> _PrefixEntry:
        """The KV of a request's shared head: from the prefix cache, or computed alone in a
        scratch row and kept."""
        L = request.head
        entry = self.prefix_cache.get(request.head_key)
        if entry is not None:
            self.stats.prefix_cache_tokens += L
            return entry
        region = KVCache(scratch.keys[:, row : row + 1], scratch.values[:, row : row + 1])
        self._prefill_chunks(region, [request.prompt.ids[:L].to(self.device)], 0)
        self.stats.prefill_tokens += L
        entry = _PrefixEntry(region.keys[:, 0, :, :L].clone(), region.values[:, 0, :, :L].clone())
        self.prefix_cache.put(request.head_key, entry)
        return entry

    def _prefill_scratch(self) -> KVCache:
        """KV rows for `prefill_rows` prompts at a time (allocated on first use)."""
        if self._scratch is None:
            self._scratch = self.model.allocate_cache(self.prefill_rows, self.max_row_tokens)
        return self._scratch

    def _prefill_chunks(self, region: KVCache, prompts: list[torch.Tensor], start: int) -> list[torch.Tensor]:
        """Tokens start.. of each prompt, one prompt per row of `region` (rows past the prompts are
        padding), in chunks of fixed length aligned to `start`; each prompt's last hidden state.

        Every chunk has the shape [rows of region, prefill_chunk] (the last one padded), so the KV a
        prompt leaves depends only on the prompt, `start` and the region's row count.
        """
        c, chunk = self.config, self.prefill_chunk
        rows_in_region = region.keys.shape[1]
        lengths = [p.shape[0] for p in prompts]
        if min(lengths) <= start:
            raise ValueError(f"an empty prefill range (a prompt of {min(lengths)} tokens from {start})")
        chunks = [math.ceil((T - start) / chunk) for T in lengths]
        last_hidden = [torch.empty(0)] * len(prompts)
        for index in range(max(chunks)):
            offset = start + index * chunk
            rows = torch.full((rows_in_region, chunk, 1 + c.n_vq), c.audio_pad_code, dtype=torch.long, device=self.device)
            rows[..., 0] = c.pad_token_id
            key_valid = torch.zeros(rows_in_region, offset + chunk, dtype=torch.bool, device=self.device)
            real = [min(chunk, T - offset) for T in lengths]
            for row, prompt in enumerate(prompts):
                if real[row] > 0:
                    rows[row, : real[row]] = prompt[offset : offset + real[row]]
                    key_valid[row, : offset + real[row]] = True
            positions = torch.arange(offset, offset + chunk, device=self.device).expand(rows_in_region, chunk)
            out = self.model.hidden_states(rows, positions, key_valid, region.window(offset + chunk), offset)
            self.stats.prefill_positions += rows_in_region * chunk
            for row in range(len(prompts)):
                if index == chunks[row] - 1:
                    last_hidden[row] = out[row, real[row] - 1]
        return last_hidden

    def _start_row(self, slot: int, request: _Request) -> None:
        c = self.config
        prompt = request.prompt
        ids = prompt.ids
        T = ids.shape[0]
        text = ids[:, 0]
        continuing = int(text[-1]) in (c.audio_start_token_id, c.audio_assistant_gen_slot_token_id)
        starts = torch.nonzero(text == c.audio_start_token_id)
        in_audio = continuing and starts.numel() > 0
        audio_len = T - int(starts[-1]) if in_audio else 0
        for tensor, value in (
            (self.active, True), (self.stopped, False), (self.in_audio, in_audio), (self.audio_len, audio_len),
            (self.delay, NOT_DELAYING), (self.new_frames, 0), (self.forced_close, False),
            (self.max_new_frames, request.max_new_frames), (self.step_limit, request.step_limit), (self.row_step, 0),
            (self.prompt_length, T), (self.slots, T),
        ):
            tensor[slot] = value
        self.keys[slot] = row_keys(torch.tensor([request.seed], dtype=torch.long))[0]
        self.text_params.set(slot, request.decoding.text)
        self.audio_params.set(slot, request.decoding.audio)
        if request.decoding.audio.repetition_penalty != 1.0 or self.seen is not None:
            self._load_seen(slot, ids)
        step = self._step
        self._rows[slot] = _Row(request, admitted_at=step, prompt_length=T)
        self._plans = None
        self._limit_step[slot] = step + request.step_limit - 1
        self._end_offset[slot] = T - step
        self._closing[slot] = False
        self.stats.admissions += 1
        # A row outside audio may sample free text from its first step; one inside audio only
        # after a delay slot and n_vq forced steps.
        self._free_text_step[slot] = step if not in_audio else step + self.n_vq + 1
        self._schedule_check()

    def _load_seen(self, slot: int, ids: torch.Tensor) -> None:
        """The codes the row's history holds (for the repetition penalty)."""
        c = self.config
        if self.seen is None:
            self.seen = torch.zeros(self.capacity, c.n_vq, c.audio_vocab_size + 1, dtype=torch.bool, device=self.device)
        row = torch.zeros(c.n_vq, c.audio_vocab_size + 1, dtype=torch.bool)
        row.scatter_(1, ids[:, 1:].T.contiguous(), True)
        row[:, c.audio_pad_code] = False
        self.seen[slot] = row.to(self.device)

    # ---------------------------------------------------------------- the step

    def _current_plans(self) -> tuple[SamplingPlan, SamplingPlan, SamplingPlan]:
        """Sampling plans of the rows in the pool: the two slots, free text, audio."""
        if self._plans is None:
            decodings = [row.request.decoding for row in self._rows.values()]
            text = [d.text for d in decodings]
            audio = [d.audio for d in decodings]
            self._plans = (
                SamplingPlan.for_rows(text, len(self.slot_ids)),
                SamplingPlan.for_rows(text, self.config.backbone.vocab_size),
                SamplingPlan.for_rows(audio, self.config.audio_vocab_size + 1),
            )
        return self._plans

    def _sample(self, may_sample_free_text: int) -> None:
        """Sample every slot; `may_sample_free_text`: how many rows may sample free text (at most)."""
        plans = self._current_plans()
        G = self.free_text_rows
        runs = min(-(-may_sample_free_text // G), -(-self.capacity // G))
        self.stats.text_head_rows += runs * G
        step = lambda: self._sample_rows(runs, *plans)  # noqa: E731
        if self.decode_mode == "graph":
            self.sampling_graphs.run((runs, plans, self.seen is not None), step, self._sampling_mutable)
        else:
            step()

    def _sampling_mutable(self) -> list[torch.Tensor]:
        tensors = [self.stopped, self.in_audio, self.audio_len, self.delay, self.new_frames, self.forced_close,
                   self.row_step, self.useful, self.attention_used, self.slots, self.last_row,
                   self.out]  # (self.hidden is only read)
        return tensors + ([self.seen] if self.seen is not None else [])

    def _sample_rows(
        self, free_text_runs: int, slot_plan: SamplingPlan, text_plan: SamplingPlan, audio_plan: SamplingPlan
    ) -> None:
        """Sample one row [B, 1+n_vq] for every slot from self.logits and advance the state machine in place.

        free_text_runs: runs of the whole text head, free_text_rows each: room for every row that
        samples free text on this step (the host guarantees it). The rows are picked on the device,
        so the host sends nothing.
        """
        c = self.config
        keys = step_keys(self.keys, self.row_step)
        first = self.row_step == 0
        live = self.active & ~self.stopped & (self.row_step < self.step_limit)

        delaying = self.delay >= 1
        forced_delay = ~self.stopped & delaying & (self.delay < self.n_vq)
        forced_end = ~self.stopped & (self.delay == self.n_vq)
        in_audio = self.in_audio & ~forced_end
        samples_text = ~self.stopped & ~delaying

        # Outside audio: a free choice over the vocabulary minus the audio-only tokens.
        free_text = torch.full_like(self.delay, c.pad_token_id)
        G = self.free_text_rows
        if free_text_runs:
            needs = self.active & samples_text & ~in_audio & ~self.forced_close  # (a closed row's text is forced)
            needs = torch.cat([needs, needs.new_zeros(len(self.slot_order) - self.capacity)])
            score = needs.long() * (len(self.slot_order) + 1) + self.slot_order
            picked = torch.topk(score, free_text_runs * G).indices.remainder(self.capacity)
        for run in range(free_text_runs):
            rows = picked[run * G : (run + 1) * G]
            text_logits = self.model.free_text_logits(self.hidden[rows]).float()
            text_logits.index_fill_(1, self.free_text_forbidden, float("-inf"))
            early = self.row_step[rows] <= self.n_vq
            text_logits[:, c.im_end_token_id] = text_logits[:, c.im_end_token_id].masked_fill(early, float("-inf"))
            free_text.scatter_(0, rows, sample_rows(text_logits, self.text_params.select(rows), text_plan, keys[rows], 0))
        # Inside audio: only the generation slot or the delay slot.
        slot_logits = self.logits.slots.float()
        slot_logits[:, 1] = slot_logits[:, 1].masked_fill(first, float("-inf"))
        frame_full = self.new_frames >= self.max_new_frames - 1
        slot_logits[:, 0] = slot_logits[:, 0].masked_fill(frame_full, float("-inf"))
        slot_choice = self.slot_ids[sample_rows(slot_logits, self.text_params, slot_plan, keys, 0)]
        self.forced_close |= in_audio & samples_text & frame_full

        text = torch.where(in_audio, slot_choice, free_text)
        after_forced_close = ~in_audio & self.forced_close & ~delaying
        text = torch.where(after_forced_close, torch.full_like(text, c.im_end_token_id), text)
        text = torch.where(samples_text, text, torch.full_like(text, c.pad_token_id))
        text = torch.where(forced_delay, torch.full_like(text, c.audio_assistant_delay_slot_token_id), text)
        text = torch.where(forced_end, torch.full_like(text, c.audio_end_token_id), text)

        # Audio: codebook k is open k+1 rows after <|audio_start|> and until k rows after the delay slot.
        k = self.codebooks[None, :]
        open_codebooks = (self.audio_len[:, None] > k) & ((self.delay[:, None] == NOT_DELAYING) | (k >= self.delay[:, None]))
        audio_logits = self.logits.audio.float()
        if audio_plan.repetition_penalty:
            assert self.seen is not None  # allocated when the first penalized row was admitted
            audio_logits = apply_row_repetition_penalty(audio_logits, self.seen, self.audio_params.repetition_penalty)
        audio_logits[..., c.audio_pad_code] = float("-inf")
        codes = sample_rows(audio_logits, self.audio_params, audio_plan, keys, self.codebooks + 1)
        codes = torch.where(open_codebooks, codes, torch.full_like(codes, c.audio_pad_code))
        if self.seen is not None:
            self.seen.scatter_(2, codes[..., None], True)
            self.seen[..., c.audio_pad_code] = False

        # Advance the state machine.
        self.in_audio.copy_((in_audio | (text == c.audio_start_token_id)) & ~forced_end)
        self.stopped |= text == c.im_end_token_id
        audio_step = (text == c.audio_start_token_id) | (text == self.slot_ids[0]) | (text == self.slot_ids[1])
        self.audio_len.copy_(torch.where(text == c.audio_end_token_id, 0, self.audio_len + audio_step.long()))
        frame_row = (text == self.slot_ids[0]) | ((text == self.slot_ids[1]) & ~delaying)
        self.new_frames += frame_row.long()
        starts_delay = (self.delay == NOT_DELAYING) & (text == self.slot_ids[1])
        delay = torch.where(starts_delay, 0, self.delay)
        delay = torch.where(delay != NOT_DELAYING, delay + 1, delay)
        self.delay.copy_(torch.where(delay > self.n_vq, NOT_DELAYING, delay))

        # Record the row (ended and empty slots write the scratch column) and where it goes in the cache.
        row = torch.cat([text[:, None], codes], dim=1)  # B, 1+n_vq
        column = torch.where(live, self.row_step, self.out.shape[1] - 1)
        self.out.scatter_(1, column[:, None, None].expand(-1, 1, row.shape[1]), row[:, None])
        self.last_row.copy_(row[:, None])
        self.useful += live.sum()
        self.row_step += live.long()
        self.slots.copy_((self.prompt_length + self.row_step - 1).clamp(0, self.max_row_tokens - 1))
        # A row that goes on is decoded next, attending to its slots 0..slot (an ended one is retired).
        going = self.active & ~self.stopped & (self.row_step < self.step_limit)
        self.attention_used += torch.where(going, self.slots + 1, 0).sum()

    def _decode(self) -> None:
        end = min(int(self._end_offset.max()) + self._step, self.max_row_tokens)  # no row holds more tokens
        window = end if self.decode_mode == "eager" else min(round_to_window(end), self.max_row_tokens)
        self.stats.attention_slots += window * self.capacity
        step = lambda: self._decode_rows(window)  # noqa: E731
        if self.decode_mode == "graph":
            self.decode_graphs.run(window, step)
        else:
            step()

    def _decode_rows(self, window: int) -> None:
        hidden = self.model.decode_rows(self.last_row, self.slots, self.cache.window(window), self.kernels)
        logits = self.model.step_logits(hidden, self.slot_ids)
        self.hidden.copy_(hidden)
        self.logits.slots.copy_(logits.slots)
        self.logits.audio.copy_(logits.audio)

    def _drop_compiled_kernels(self) -> None:
        self.kernels = EAGER_KERNELS  # torch.compile errors are RuntimeErrors too

    # ---------------------------------------------------------------- checks

    def _schedule_check(self) -> None:
        """The next check: the step before some row may sample free text (to run the text head
        only for rows that really may: the others are still inside audio, their bound moves on),
        the step at which it may (after which it may have stopped), or a step limit."""
        limits = int(self._limit_step.min())
        self._check_at = max(min(int(self._free_text_step.min()) - 1, limits), self._last_check + self.check_every)

    def _check(self, step: int) -> list[Finished]:
        """Read the row states (the host waits here), retire rows that ended, plan the next check."""
        self.stats.host_checks += 1
        self._last_check = step
        done = self.active & (self.stopped | (self.row_step >= self.step_limit))
        until = torch.where(self.in_audio, self.n_vq + 1, 0)  # a delay slot, then n_vq forced steps
        until = torch.where(self.delay >= 1, self.n_vq + 1 - self.delay, until)
        read = torch.cat([torch.stack([done.long(), self.forced_close.long(), self.row_step, until]).flatten(),
                          self.useful.view(1), self.attention_used.view(1)]).cpu()
        B = self.capacity
        done, forced_close, row_step, until = (read[i * B : (i + 1) * B].numpy() for i in range(4))
        self.stats.useful_row_steps, self.stats.attention_slots_used = int(read[-2]), int(read[-1])
        occupied = np.zeros(B, dtype=bool)
        occupied[list(self._rows)] = True
        self._free_text_step = np.where(occupied & (done == 0), step + 1 + until, NEVER)
        self._closing = occupied & (forced_close != 0)
        finished = []
        ended = np.flatnonzero(done).tolist()
        if ended:
            index = torch.tensor(ended, device=self.device)
            rows_out = self.out[index].cpu()
            for i, slot in enumerate(ended):
                row = self._rows.pop(slot)
                result = self._result(row.request.prompt, rows_out[i, : row_step[slot]], bool(forced_close[slot]))
                finished.append(Finished(row.request.id, result))
            self._free = sorted(self._free + ended, reverse=True)
            for tensor in (self.active, self.prompt_length, self.row_step, self.slots):
                tensor.index_fill_(0, index, 0)
            self._limit_step[ended] = NEVER
            self._end_offset[ended] = -NEVER
            self._plans = None
        self._schedule_check()
        return finished

    def _result(self, prompt: Prompt, generated: torch.Tensor, forced_close: bool) -> RowResult:
        c = self.config
        ends = torch.nonzero(generated[:, 0] == c.im_end_token_id)
        finished = bool(ends.numel())
        if finished:
            generated = generated[: int(ends[0]) + 1]
        tail = prompt.ids[-(prompt.prefix_frames + 1) :] if prompt.prefix_frames else prompt.ids[:0]
        runs = self.processor.frames_from_rows(tail, generated, prompt.prefix_frames)
        frames = runs[0] if runs else torch.zeros(0, c.n_vq, dtype=torch.long)
        return RowResult(frames, runs, generated, finished, forced_close)
