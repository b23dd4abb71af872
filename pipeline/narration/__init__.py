"""Narration: plan segments in, stored segments (codes and decoded audio) out.

The narrator (`narrate`) runs the model over a batch of segments with the voice (`voice`) and
checkpoint (`models`), checks each result (`checks`), decodes it (`segment_audio`) and keeps
it under its key in the segment store (`store`).
"""
