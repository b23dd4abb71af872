"""The released codec's rates, with no imports, so code that never loads a codec can read them.

A loaded codec's own config is where code reads its rates (`codec.sample_rate`,
`codec.frame_rate`); these constants are the defaults of a codec config file that leaves them
out, and the values for code that runs with no codec config at all (planning estimates frames
before any model is resolved; finishing defaults). 24000 and 1920 are written down here only.
"""

DEFAULT_SAMPLE_RATE = 24_000  # audio samples per second
DEFAULT_SAMPLES_PER_FRAME = 1920  # audio samples per code frame
DEFAULT_FRAME_RATE = DEFAULT_SAMPLE_RATE / DEFAULT_SAMPLES_PER_FRAME  # 12.5 code frames per second
