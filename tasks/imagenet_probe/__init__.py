"""ImageNet classification by attentive probes on frozen features (the paper's Table 7 protocol)."""

from . import task  # noqa: F401
