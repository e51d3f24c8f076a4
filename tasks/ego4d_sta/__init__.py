"""Ego4D short-term object-interaction anticipation (STA): official annotation format, per-box heads, STA mAP.

`data` reads the official `fho_sta_*.json` files and the frames they point at, `metrics` is the official top-5 STA
mAP in numpy, `mini` writes a small generated dataset in the same layout, `heads` holds the trainable per-box verb
and time-to-contact heads, `score_cli` is `toto-eval ego4d-score`, and `task` is the registered `ego4d_sta` task.
"""
