"""Sampling: flow-matching solvers, guidance, the sampler loop and long-video windows."""
