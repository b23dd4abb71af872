"""The PocketSphinx worker process: ``python -m pipeline.quality.sphinx_worker '<config json>'``.

Reads requests from stdin and answers on stdout, in frames of raw bytes (no pickling, nothing of
the parent's main module re-run): a request is a uint32 count, then per utterance a uint64
length and that many bytes of 16 kHz mono int16 PCM; the answer is per utterance a uint32
length and the transcript in UTF-8. End of input ends the process.
"""

from __future__ import annotations

import json
import struct
import sys
from typing import IO, BinaryIO


def read_exact(stream: IO[bytes], size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def serve(config: dict, source: BinaryIO, sink: BinaryIO) -> None:
    from pocketsphinx import Decoder

    from pipeline.quality.asr import decode_utterances

    decoder = Decoder(loglevel="ERROR", **config)
    while (header := read_exact(source, 4)) is not None:
        pcms = []
        for _ in range(struct.unpack("<I", header)[0]):
            length = struct.unpack("<Q", read_exact(source, 8) or b"")[0]
            pcms.append(read_exact(source, length) or b"")
        for text in decode_utterances(decoder, pcms):
            encoded = text.encode("utf-8")
            sink.write(struct.pack("<I", len(encoded)) + encoded)
        sink.flush()


if __name__ == "__main__":
    serve(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}, sys.stdin.buffer, sys.stdout.buffer)
