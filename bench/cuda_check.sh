#!/usr/bin/env bash
# The GPU check of the generation engine, as one prepared run of about ten minutes on one
# H100 or H200 (the device machines have PyTorch, tokenizers and safetensors already):
#   1. CUDA graph replays give the rows of the same fixed-shape step run eagerly, and the bf16
#      fixed-shape step agrees with the eager one (tests/moss_model/test_cuda_decode.py); a segment's
#      audio decoded on the GPU does not depend on its batch (tests/pipeline/test_stored_audio_cuda.py);
#   2. the continuous-batching engine with the 8B shape: audio seconds per second at pools of 64
#      and 128 rows (about 440-token prompts sharing a voice head, 190-frame segments;
#      bench/engine.py --config 8b; target at least 300 on one H200) -- first, so that a call cut
#      short at its time limit still has the figure the issue asks for -- with prefill chunks of
#      64 tokens (the default) and of 128 (the padding each prompt's last chunk wastes, priced on
#      the GPU); then the tiny config's stream of 200 Moby-Dick-shaped requests against static
#      batches of 32 on the GPU, where a step costs about the same at 8 rows as at 32 (the
#      speed-up's ceiling is the step ratio);
#   3. the 8B shape in bf16: ms per decode step at batch 1 and 16, CUDA graphs first (the default
#      on CUDA), then eager launches (the in-process baseline); the upstream loop if asked (below);
#      then graphs over torch.compile'd layers (a compile of a minute or two);
#   4. the decode step alone in each mode, without sampling (bench/decode_step.py);
#   5. the per-segment quality measures (bench/quality.py): speaker embeddings on the GPU, PocketSphinx
#      on a core, in CPU-s per audio-s and cores needed at 300 audio-s/s (60 s at most).
# To see where time goes: bench/generate.py --profile or --sync-debug, bench/decode_step.py.
# Usage, from the repository root: bash bench/cuda_check.sh   (the log also goes to $OUT when set)
# With MOSS_TTS_UPSTREAM set to a checkout of OpenMOSS/MOSS-TTS (never part of this project;
# on a device machine, carry one in an ignored folder), it also times the upstream loop on the
# same 8B weights at batch 1, next to CUDA-graph decoding.
#
# The floor at batch 1: a step inside audio streams 14.16 GB of weights (8.46B parameters in
# bf16, less the embedding tables and the text head, of which only rows are read), so about
# 4.2 ms at an H100's 3.35 TB/s and 2.9 ms at an H200's 4.8 TB/s; the bench prints GB/s achieved.
# Batch 16 streams the same weights, so its step should cost little more than batch 1's.
set -uo pipefail
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
log="${OUT:-/tmp}/cuda_check.log"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name())'
  timeout 240 python3 -m pytest -q -s -p no:cacheprovider tests/moss_model/test_cuda_decode.py \
    tests/pipeline/test_stored_audio_cuda.py  # and segment audio decoded 8 rows at a time on the GPU
  # the engine's audio-s/s first: the target, and the step most worth a device's minutes
  timeout 480 python3 bench/engine.py --config 8b --device cuda --capacities 64 128 --prefill-chunk 64 128 \
    --json "${OUT:-/tmp}/engine_8b.json"
  timeout 150 python3 bench/engine.py --device cuda --decode graph --repeats 2 --json "${OUT:-/tmp}/engine_tiny_cuda.json"
  timeout 300 python3 bench/generate.py --config 8b --device cuda --batches 1 16 --repeats 3 --decode graph eager
  if [ -n "${MOSS_TTS_UPSTREAM:-}" ]; then
    timeout 300 python3 bench/generate.py --config 8b --device cuda --batches 1 --repeats 3 --decode graph \
      --upstream "$MOSS_TTS_UPSTREAM"
  fi
  timeout 300 python3 bench/generate.py --config 8b --device cuda --batches 1 16 --repeats 3 --decode graph+compile
  timeout 300 python3 bench/decode_step.py --config 8b --device cuda --batches 1 16  # the step alone, no sampling
  # 5. quality measures per audio second with the speaker encoder on the GPU (PocketSphinx stays on a CPU core)
  timeout 60 python3 bench/quality.py --device cuda --seconds 120 --asr-seconds 10 --narration-rate 300 \
    || echo "quality bench skipped or failed (needs resemblyzer, pocketsphinx, torchaudio)"
} 2>&1 | tee "$log"
echo "== summary =="
grep -E "^(config=|decode mode|batch |throughput|speed-up vs static|steps: | +[0-9]+ +[0-9.]+ | +(static|graph|graph\+compile) +[0-9]+ |capacity | *pool )|passed|failed|error|CPU-s/audio-s" "$log"
