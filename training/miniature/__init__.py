"""Experiments in the miniature world (ft2_core.miniature): the base model's training and evaluation, TLPO end to end,
ablations, long videos; their configs and result tables."""
