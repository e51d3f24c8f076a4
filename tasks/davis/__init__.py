"""DAVIS-2017 semi-supervised video object segmentation by nearest-neighbour label propagation.

`data` reads the official on-disk layout, `metrics` is J and F with the official davis2017-evaluation semantics
(numpy/scipy only), `scoring` scores a folder of predictions and writes the official CSVs, `propagation` carries
the first-frame mask through a video with frozen features, `mini` generates a small DAVIS in the same layout,
`score_cli` is `toto-eval davis-score`, and `task` is the registered `davis` task.
"""
