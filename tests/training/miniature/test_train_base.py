"""The miniature base trainer: a short run lowers the loss, resumes exactly, and exports a loadable model folder."""
import json

import pytest
import torch
from safetensors.torch import load_file

from ft2_core.miniature.model import WorldEncoders
from ft2_core.miniature.world import HELD_OUT_SEEDS_FROM, make_clip
from ft2_core.model_paths import ModelPaths
from ft2_core.pipeline import load_talking_model
from tests.conftest import run_on_a_full_disk
from tests.training.conftest import (
    assert_stopped_cleanly_on_a_full_disk,
    kill_9_when,
    lines_in,
    write_config,
)
from training.common.data_order import mix_seed
from training.miniature import evaluate_base, train_base

SMALL = {"num_layers": 1, "num_attention_heads": 2, "attention_head_dim": 16, "ffn_dim": 64, "added_kv_proj_dim": 32}


def base_config(tmp_path, output, steps):
    path = write_config(tmp_path / f"{output.name}.toml", {
        "world": {"frames": 9, "size": 32},
        "train": {"output": str(output), "steps": steps, "batch_size": 2, "lr": 3e-3, "warmup": 1, "ema": 0.0, "pool": 4,
                  "refresh": 1, "checkpoint_every": 3, "seed": 0},
    })
    text = path.read_text().replace("[world]", "[model]\ntransformer = { " + ", ".join(f"{k} = {v}" for k, v in SMALL.items())
                                    + " }\n\n[world]")
    path.write_text(text)
    return ["--config", str(path)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("base")
    output = tmp_path / "straight"
    assert train_base.main(base_config(tmp_path, output, 12)) == 0
    return tmp_path, output


def probe_loss(model, encoders, clips):
    with torch.no_grad():
        return float(train_base.step_loss(model, [encoders.clip_inputs(c) for c in clips], encoders, step=0, seed=123,
                                          audio_dropout=0.0, frames=9))


def test_short_run_lowers_the_loss_and_exports_a_model_folder(trained):
    _, output = trained
    folder = output / "model"
    paths = ModelPaths.from_folder(folder)
    model = load_talking_model(paths.transformer, paths.audio_adapter, prediction=paths.prediction)
    assert model.prediction == "sample_from_reference" and model.num_layers == 1
    assert (folder / "transformer" / "config.json").is_file() and (folder / "vae" / "config.json").is_file()
    recorded = json.loads((folder / "ft2_model.json").read_text())["produced_by"]["config"]
    assert set(recorded) == {"model", "world", "train"}  # nothing of this machine (the config's folder) in the record
    encoders = WorldEncoders.from_folder(folder)
    clips = [make_clip(HELD_OUT_SEEDS_FROM + i, 9, 32) for i in range(2)]
    untrained = train_base.build_model({"model": {"transformer": SMALL, "audio_adapter": {},
                                                  "prediction": "sample_from_reference"}}, seed=0)
    assert probe_loss(model, encoders, clips) < 0.8 * probe_loss(untrained, encoders, clips)


def test_resume_is_exact(trained):
    tmp_path, straight = trained
    resumed = tmp_path / "resumed"
    assert train_base.main(base_config(tmp_path, resumed, 6)) == 0
    assert train_base.main(base_config(tmp_path, resumed, 12)) == 0
    a = load_file(straight / "model" / "transformer" / "diffusion_pytorch_model.safetensors")
    b = load_file(resumed / "model" / "transformer" / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.hostile(item=2, ends="resumes")
def test_a_full_disk_and_a_kill_9_end_with_the_uninterrupted_base(trained, tiny_dir):
    """A write that fails (the largest checkpoint file, as on a full disk) stops the run in one sentence with nothing
    half-written; a kill -9 after some steps loses nothing but time: both, restarted, end with the straight model."""
    tmp_path, straight = trained
    largest = max(p.stat().st_size for p in (straight / "checkpoint-0000012").iterdir())
    full, killed = tmp_path / "full", tmp_path / "killed"
    run = run_on_a_full_disk("training.miniature.train_base", base_config(tmp_path, full, 12), largest - 1, tiny_dir)
    assert_stopped_cleanly_on_a_full_disk(run, full)
    assert kill_9_when("training.miniature.train_base", base_config(tmp_path, killed, 12),
                       lambda: lines_in(killed / "metrics.jsonl") >= 4, tiny_dir)
    weights = "model/transformer/diffusion_pytorch_model.safetensors"
    for out in (full, killed):
        assert train_base.main(base_config(tmp_path, out, 12)) == 0
        assert (out / weights).read_bytes() == (straight / weights).read_bytes()


def test_a_skip_run_exports_the_prior_it_measured_and_its_folder_animates(tmp_path):
    """The prior is the second moment of what the model sees (clean latents minus the I2V reference, over the run's
    first PRIOR_CLIPS clips, recomputed here through the world's encoders); it travels in the folder, the folder loads
    through ModelPaths and animates finite frames."""
    from ft2_core.pipeline import FantasyTalkingPipeline
    from ft2_core.sampling.options import SamplerOptions
    from training.miniature.base_model import PRIOR_CLIPS, training_clip

    output = tmp_path / "skip"
    assert train_base.main(base_config(tmp_path, output, 2) + ["--set", "model.prediction=sample_with_skip"]) == 0
    paths = ModelPaths.from_folder(output / "model")
    assert paths.deviation_prior == output / "model" / "deviation_prior.safetensors"
    pipe = FantasyTalkingPipeline.from_paths(paths)
    model = pipe.model
    encoders = WorldEncoders.from_folder(output / "model")
    square_sum = 0.0
    for index in range(PRIOR_CLIPS):
        clip = training_clip(0, index, 9, 32)
        latents = encoders.vae.encode(torch.from_numpy(clip.frames).permute(3, 0, 1, 2)[None] * 2 - 1)
        reference = encoders.condition(torch.from_numpy(clip.portrait), 9)[:, -latents.shape[1]:, :1]
        square_sum += float((latents - reference).double().square().sum())
    vectors = PRIOR_CLIPS * latents[0, 0].numel()
    assert abs(float(model.deviation_spread.double().square().sum()) / (square_sum / vectors) - 1) < 1e-4
    assert bool((model.deviation_spread[:-1] >= model.deviation_spread[1:]).all())
    clip = make_clip(HELD_OUT_SEEDS_FROM, 9, 64)
    frames = pipe.animate(torch.from_numpy(clip.portrait), clip.audio, options=SamplerOptions(steps=2), num_frames=9,
                          fps=clip.fps, max_side=64).frames
    assert frames.shape == (9, 64, 64, 3) and bool(torch.isfinite(frames).all())


def test_a_base_on_a_trained_wan_vae_has_its_channels_and_its_folder_animates(world_vae, tmp_path, capsys):
    """model.vae puts the DiT in a world-trained Wan VAE's latent space: the folder carries that VAE (the real class),
    the DiT reads its z_dim channels (noisy, Wan's 4 mask channels, the condition's) and the folder animates."""
    from ft2_core.models.conditioning import WanVAE
    from ft2_core.pipeline import FantasyTalkingPipeline
    from ft2_core.sampling.options import SamplerOptions

    output = tmp_path / "on_vae"
    assert train_base.main(base_config(tmp_path, output, 2) + ["--set", f"model.vae={world_vae / 'vae'}"]) == 0
    z = json.loads((world_vae / "vae" / "config.json").read_text())["z_dim"]
    dit = json.loads((output / "model" / "transformer" / "config.json").read_text())
    assert (dit["in_channels"], dit["out_channels"]) == (2 * z + 4, z)
    untrained = evaluate_base.untrained_model_dir(output / "model", tmp_path / "work")  # the evaluation's "untrained" row
    assert json.loads((untrained / "transformer" / "config.json").read_text())["in_channels"] == 2 * z + 4
    pipe = FantasyTalkingPipeline.from_paths(ModelPaths.from_folder(output / "model"))
    assert isinstance(pipe.vae, WanVAE)
    clip = make_clip(HELD_OUT_SEEDS_FROM, 9, 64)
    frames = pipe.animate(torch.from_numpy(clip.portrait), clip.audio, options=SamplerOptions(steps=2), num_frames=9,
                          fps=clip.fps, max_side=64).frames
    assert frames.shape == (9, 64, 64, 3) and bool(torch.isfinite(frames).all())
    both = base_config(tmp_path, tmp_path / "both", 2) + ["--set", f"model.vae={world_vae / 'vae'}",
                                                          "--set", "model.latent={ time_basis = \"linear\" }"]
    assert train_base.main(both) == 2
    assert "give one of them" in capsys.readouterr().err


@pytest.mark.parametrize("every", [1, 3])
def test_the_pool_after_a_jump_is_the_pool_stepped_to_and_refreshes_every_few_steps(every):
    """What a resumed run rebuilds at once is what a straight run has, step by step; `every` spaces the refreshes."""
    stepped = train_base.ClipPool(lambda index: index, 3, 2, 0, every)  # a slot holds its clip's index
    for step in range(1, 11):
        stepped.advance_to(step)
    jumped = train_base.ClipPool(lambda index: index, 3, 2, 0, every)
    jumped.advance_to(10)
    refreshes = -(-10 // every)  # steps 1, 1 + every, ... below 11
    assert stepped.slots == jumped.slots and max(jumped.slots) == 3 + 2 * refreshes - 1


def test_the_mouth_weight_is_a_weighted_mean_of_the_error_over_where_the_world_s_mouth_is(trained):
    """train.mouth_weight: the loss is each element's squared velocity error weighted 1 + w where the clip's mouth covers
    its latent position (a plain weighted mean computed here from the model's own velocity), and w = 0 is the plain loss."""
    _, output = trained
    folder = output / "model"
    paths = ModelPaths.from_folder(folder)
    model = load_talking_model(paths.transformer, paths.audio_adapter, prediction=paths.prediction)
    encoders = WorldEncoders.from_folder(folder)
    clips = [make_clip(HELD_OUT_SEEDS_FROM + i, 9, 32) for i in range(2)]
    items = [train_base.prepared_clip(encoders, clip, with_mouth=True) for clip in clips]
    mouth = torch.cat([item["mouth"] for item in items])  # [B, F, h, w]
    assert mouth.shape == (2, 3, 8, 8) and 0 < float(mouth.mean()) < 0.3
    pixels = torch.from_numpy(clips[0].mouth_masks[5:9]).amax(dim=0) > 0  # latent frame 2: video frames 5-8
    assert torch.equal(mouth[0, 2] > 0, torch.nn.functional.max_pool2d(pixels[None].float(), 4)[0] > 0)

    captured = []
    model.register_forward_hook(lambda module, args, output: captured.append(output))
    with torch.no_grad():
        plain = float(train_base.step_loss(model, items, encoders, step=0, seed=5, audio_dropout=0.0, frames=9))
        weighted = float(train_base.step_loss(model, items, encoders, step=0, seed=5, audio_dropout=0.0, frames=9,
                                              mouth_weight=4.0))
    velocity = captured[1].double()
    generator = torch.Generator().manual_seed(mix_seed(5, 0, 11))  # step_loss's draws, in its order
    x0 = torch.cat([item["latents"] for item in items]).double()
    sigma = torch.rand(2, generator=generator).double()
    noise = torch.randn(x0.shape, generator=generator).double()
    error = (velocity - (noise - x0)).square()
    weights = (1 + 4.0 * mouth.double()).unsqueeze(1).expand_as(error)
    per_clip = (error * weights).flatten(1).sum(1) / weights.flatten(1).sum(1)
    assert weighted == pytest.approx(float((per_clip * sigma.square()).mean()), rel=1e-5)
    assert plain == pytest.approx(float((error.flatten(1).mean(1) * sigma.square()).mean()), rel=1e-5)
    assert weighted != pytest.approx(plain, rel=1e-3)
