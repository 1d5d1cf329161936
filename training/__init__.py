"""Training tools, run from the repository root as modules (`python -m training.train_expert --config ...`).

- top level: the real tools, in the order a user runs them: preprocess, generate_candidates, train_critic,
  curate_pairs, train_expert, train_gate; their example configs in configs/.
- common/: what the tools share (config checking, checkpoints and resume, clean stops, data order, the Flow-DPO
  loop, accelerate set-up, the frozen base model).
- miniature/: experiments in the miniature world (the base model, TLPO end to end, ablations, long videos), with
  their configs and result tables.
- fixtures/: toy data sets with known answers, for checking the trainers.
"""
