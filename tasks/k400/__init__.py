"""Kinetics-400 action classification by attentive probes on frozen clip features (the paper's Table 8)."""
