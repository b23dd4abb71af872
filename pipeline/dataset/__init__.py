"""Dataset synthesis: rows of (id, text, voice) in, sharded per-utterance audio out.

One module per step, each over plain records: `rows` reads the input (streamed), `voices`
finds the references and assigns them, `prepare` normalizes and keys the rows into work items
(or rejects them), `manifest` writes the work list the shards are cut from, `synth` runs the
engine over a batch of work items in an actor, `results` stores each finished utterance under
its key, `shards` assembles shards atomically, `card` writes the dataset card.
"""
