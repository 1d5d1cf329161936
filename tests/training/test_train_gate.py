import os

import pytest
import torch

from ft2_core.tlpo.experts import Expert, attach_experts, detach_experts
from ft2_core.tlpo.flow_dpo import dpo_step
from ft2_core.tlpo.gate import StaticMix, load_gate
from ft2_core.tlpo.lora_formats import LoraModule, LoraWeights, load_lora, save_expert
from ft2_core.tlpo.preference_data import LatentCache, PairDataset, collate_pairs, read_pairs
from tests.conftest import REPO, run_on_a_full_disk
from tests.training.conftest import (
    WHOLE_BATCHES,
    assert_stopped_cleanly_on_a_full_disk,
    kill_9_when,
    launch_two_processes,
    lines_in,
    metrics,
    write_config,
)
from training import train_expert, train_gate


def timestep_specialist(model, dataset, high_noise: bool, steps=60, seed=0) -> LoraWeights:
    """An expert that helps (winner preferred) only at high noise, or only at low noise, and hurts elsewhere:
    trained by Flow-DPO on the pairs where sigma is in its range and on swapped pairs outside it."""
    lora = train_expert.fresh_lora(model, 4, 4.0, ("self_attn.q", "self_attn.v", "ffn.0", "ffn.2"), seed)
    attach_experts(model, [Expert("x", lora)])
    model.expert_gate = StaticMix([1.0])
    fused = train_expert.fused_modules(model)
    params = [p for m in fused.values() for p in (m.down, m.up)]
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(params, lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    for step in range(steps):
        batch = collate_pairs([dataset[int(i)] for i in torch.randint(len(dataset), (4,), generator=g)])
        sigma = torch.rand(4, generator=g)
        own = sigma > 0.5 if high_noise else sigma < 0.5
        winner = torch.where(own[:, None, None, None, None], batch["winner"], batch["loser"])
        loser = torch.where(own[:, None, None, None, None], batch["loser"], batch["winner"])
        batch.update(winner=winner, loser=loser, audio=model.adapter.windows(batch["audio_features"], batch["num_frames"]))
        out = dpo_step(model, batch, sigma, torch.randn(batch["winner"].shape, generator=g), beta=500.0)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    trained = LoraWeights({n: LoraModule(m.down.detach().clone(), m.up.detach().clone(), 4.0) for n, m in fused.items()}, "test")
    detach_experts(model)
    return trained


def test_gate_learns_which_expert_helps_at_which_noise(tmp_path, toy_data, tiny_model):
    dataset = PairDataset(LatentCache(toy_data["cache"]), read_pairs(toy_data["split"]["motion"][0]))
    high = save_expert(timestep_specialist(tiny_model, dataset, True), tmp_path / "high.safetensors", "motion", "ft2-tiny")
    low = save_expert(
        timestep_specialist(tiny_model, dataset, False, seed=1), tmp_path / "low.safetensors", "quality", "ft2-tiny"
    )
    output = tmp_path / "gate"
    config = write_config(
        tmp_path / "gate.toml",
        {
            "model": {"folder": ""},
            "gate": {"experts": {"motion": str(high), "quality": str(low)}},
            "data": {
                "cache": str(toy_data["cache"]),
                "pairs": {"motion": str(toy_data["split"]["motion"][0]), "quality": str(toy_data["split"]["quality"][0])},
            },
            "train": {
                "output": str(output),
                "steps": 300,
                "batch_size": 4,
                "lr": 1e-2,
                "beta": 500.0,
                "seed": 0,
                "checkpoint_every": 1000,
                **WHOLE_BATCHES,
            },
        },
    )
    assert train_gate.main(["--config", str(config)]) == 0
    gate = load_gate(output / "gate.safetensors", num_layers=tiny_model.num_layers)
    assert gate.experts == ("motion", "quality")
    with torch.no_grad():  # mean weight over layers and over the noisiest / cleanest fifth of the schedule
        noisy = gate(torch.linspace(800, 1000, 21)).mean(dim=(0, 1))
        clean = gate(torch.linspace(0, 200, 21)).mean(dim=(0, 1))
    assert noisy[0] > noisy[1] + 0.1, noisy  # the high-noise expert leads at high t
    assert clean[1] > clean[0] + 0.1, clean  # the low-noise expert leads at low t
    assert metrics(output)[-1]["implicit_accuracy"] > 0.75


@pytest.fixture(scope="module")
def two_experts(tmp_path_factory, tiny_model) -> dict:
    """Two small random experts (motion, quality) saved as files."""
    folder = tmp_path_factory.mktemp("experts")
    g = torch.Generator().manual_seed(0)
    experts = {}
    for seed, dimension in enumerate(("motion", "quality")):
        lora = train_expert.fresh_lora(tiny_model, 4, 4.0, ("self_attn.q", "ffn.0"), seed)
        for module in lora.modules.values():
            module.up = torch.randn(module.up.shape, generator=g) * 0.05
        experts[dimension] = str(save_expert(lora, folder / f"{dimension}.safetensors", dimension, "ft2-tiny"))
    return experts


def gate_config(path, output, experts, toy_data, **train):
    return write_config(path, {
        "model": {"folder": ""}, "gate": {"experts": experts, "embed_dim": 8},
        "data": {"cache": str(toy_data["cache"]), "pairs": {d: str(toy_data["split"][d][0]) for d in experts}},
        "train": {"output": str(output), "steps": 6, "batch_size": 4, "lr": 1e-2, "beta": 500.0, "checkpoint_every": 2,
                  **WHOLE_BATCHES, **train},
    })


def test_gate_on_two_fsdp_processes_matches_one(tmp_path, toy_data, two_experts):
    """The gate trained with the model sharded over two processes (FSDP, frozen experts sharded with their blocks)
    equals the single-process gate."""
    outputs = {strategy: tmp_path / strategy for strategy in ("single", "fsdp")}
    configs = {strategy: gate_config(tmp_path / f"{strategy}.toml", output, two_experts, toy_data, strategy="fsdp")
               for strategy, output in outputs.items()}
    assert train_gate.main(["--config", str(configs["single"])]) == 0  # one process: FSDP has nothing to shard over
    launch_two_processes("training.train_gate", ["--config", str(configs["fsdp"])])
    single, sharded = (load_gate(out / "gate.safetensors") for out in outputs.values())
    assert single.proj.abs().sum() > 0  # it did train
    torch.testing.assert_close(sharded.proj, single.proj, rtol=1e-3, atol=1e-5)
    torch.testing.assert_close(sharded.bias, single.bias, rtol=1e-3, atol=1e-5)


@pytest.mark.hostile(item=2, ends="resumes")
def test_a_full_disk_and_a_kill_9_end_with_the_uninterrupted_gate(tmp_path, toy_data, two_experts, tiny_dir):
    """A write that fails (the largest checkpoint file, as on a full disk) stops the run in one sentence with nothing
    half-written; a kill -9 after some steps loses nothing but time: both runs, restarted, end with the straight gate."""
    straight = tmp_path / "straight"
    assert train_gate.main(["--config", str(gate_config(tmp_path / "s.toml", straight, two_experts, toy_data))]) == 0
    largest = max(p.stat().st_size for p in (straight / "checkpoint-0000006").iterdir())
    full, killed = tmp_path / "full", tmp_path / "killed"
    argv = {out: ["--config", str(gate_config(tmp_path / f"{out.name}.toml", out, two_experts, toy_data))]
            for out in (full, killed)}
    assert_stopped_cleanly_on_a_full_disk(run_on_a_full_disk("training.train_gate", argv[full], largest - 1, tiny_dir), full)
    assert kill_9_when("training.train_gate", argv[killed], lambda: lines_in(killed / "metrics.jsonl") >= 3, tiny_dir)
    for out in (full, killed):
        assert train_gate.main(argv[out]) == 0
        assert (out / "gate.safetensors").read_bytes() == (straight / "gate.safetensors").read_bytes()
        assert [m["step"] for m in metrics(out)] == list(range(1, 7))


def test_tiny_configs_run_and_load(tmp_path, monkeypatch):
    """The shipped tiny configs as a user runs them (relative output paths, toy data built on first use)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FT2_CACHE", os.environ.get("FT2_CACHE", str(tmp_path / "cache")))
    configs = REPO / "training" / "configs"
    for dimension in ("motion", "lipsync", "quality"):
        argv = [
            "--config",
            str(configs / "tiny_expert.toml"),
            "--set",
            f"expert.dimension={dimension}",
            "--set",
            f'train.output="outputs/tiny_expert_{dimension}"',
        ]
        assert train_expert.main(argv) == 0
        assert load_lora(f"outputs/tiny_expert_{dimension}/expert_{dimension}.safetensors").metadata["ft2.dimension"] == dimension
    assert train_gate.main(["--config", str(configs / "tiny_gate.toml")]) == 0
    assert load_gate("outputs/tiny_gate/gate.safetensors", num_layers=2).experts == ("motion", "lipsync", "quality")
