"""ImageNet classification by attentive probes on frozen features (the paper's Table 7 protocol)."""
