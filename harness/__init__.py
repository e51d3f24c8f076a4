"""The evaluation engine: registry, backbone contract, feature cache, probes, evaluate(), results and CLI."""
