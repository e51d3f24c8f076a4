"""Code every part may import: user-facing errors, strict configs, the learning-rate schedule.

`harness` (evaluation) and `pretrain` (the model and its training) both depend on these and on nothing of each
other through them, so the model file never imports the evaluation engine.
"""
