"""Analysis of finished runs: equal progress, learning times, across-seed inference,
sweeps, C-score estimation and every figure."""
