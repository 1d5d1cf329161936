"""TLPO reproduced end to end in the miniature world, with one command, stage by stage (resumable):

    python -m training.miniature.reproduce_tlpo --config training/miniature/configs/tlpo.toml

conditions -> candidate videos of the base model (several seeds and audio-guidance settings each) ->
Talking-Critic (the tiny Qwen2.5-Omni thinker + our LoRA, trained on oracle judgements with rater
noise) -> Talking-NSQ pairs curated by the critic (never by the oracles) -> latent cache (world lip
masks) -> three Flow-DPO experts and a pooled single LoRA -> the gate with the experts frozen ->
evaluation by the oracles on held-out conditions. Every stage runs the project's own training commands
(in-process, through their `main(argv)`); a finished stage leaves `stages/<name>.json` (with its wall time) and
is skipped on the next run.

The package: `schema` (the chain's settings), `world_data` (conditions, true clips, the oracles' scores),
`raters` (the simulated human raters), `stages`, `report` (tables and verdicts), `runner` (order, reuse, resume) and
`refresh_critic` (a finished run's critic table remade with today's judges).
"""
