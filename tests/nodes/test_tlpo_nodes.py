"""TLPO nodes on the tiny model: experts and gate reach the sampler on both ways in."""
import pytest
import torch

from ft2_core.demo_inputs import demo_portrait
from ft2_core.tlpo.experts import Expert
from ft2_core.tlpo.gate import load_gate
from ft2_core.tlpo.lora_formats import load_lora
from tests.nodes.stand_ins import SAMPLER, comfy_audio


def load_all(nodes, **strengths):
    kwargs = {}
    for name in ("motion", "lipsync", "quality"):
        kwargs[f"{name}_lora_name"] = f"tiny_{name}.safetensors"
        kwargs[f"{name}_strength"] = strengths.get(name, 1.0)
    return nodes["FT2LoadExperts"]().load(**kwargs)[0]


def test_pickers_list_experts_and_gates(ft2):
    nodes = ft2.NODE_CLASS_MAPPINGS
    loras = nodes["FT2LoadExperts"].INPUT_TYPES()["required"]["motion_lora_name"][0]
    assert loras == ["none", "tiny_lipsync.safetensors", "tiny_motion.safetensors", "tiny_quality.safetensors"]
    assert nodes["FT2LoadGate"].INPUT_TYPES()["required"]["gate_name"][0] == ["tiny_gate.safetensors"]


def test_animate_with_experts_and_gate_matches_the_library(ft2, models_dir, tiny_pipeline):
    nodes = ft2.NODE_CLASS_MAPPINGS
    (pipeline,) = nodes["FT2PipelineLoader"]().load("(built-in tiny demo model)", "fp32")
    experts = load_all(nodes, lipsync=0.5)
    (gate,) = nodes["FT2LoadGate"]().load("tiny_gate.safetensors")
    image, audio = demo_portrait()[None], comfy_audio(0.3)
    args = (pipeline, image, audio, "talk", "", 64, 9, 23.0)
    with_experts, _ = nodes["FT2Animate"]().animate(*args, experts=experts, gate=gate, **SAMPLER)
    plain, _ = nodes["FT2Animate"]().animate(*args, **SAMPLER)
    assert (with_experts - plain).abs().max() > 1e-3

    from ft2_core.io.audio import audio_from_waveform
    from ft2_core.pipeline import DEFAULT_NEGATIVE_PROMPT
    from ft2_core.sampling.options import SamplerOptions

    library = tiny_pipeline.animate(
        image[0], audio_from_waveform(audio["waveform"], audio["sample_rate"]), "talk", DEFAULT_NEGATIVE_PROMPT,
        SamplerOptions(**SAMPLER), num_frames=9, fps=23.0, max_side=64,
        experts=[Expert(n, load_lora(models_dir / "loras" / f"tiny_{n}.safetensors"), s)
                 for n, s in (("motion", 1.0), ("lipsync", 0.5), ("quality", 1.0))],
        gate=load_gate(models_dir / "ft2_gates" / "tiny_gate.safetensors"))
    torch.testing.assert_close(with_experts, library.frames, rtol=1e-4, atol=1e-4)
    assert all(not hasattr(m, "base") for m in pipeline.model.transformer.blocks[0].attn1.modules())  # detached after


def test_schedule_and_heatmap(ft2):
    nodes = ft2.NODE_CLASS_MAPPINGS
    (schedule,) = nodes["FT2ExpertSchedule"]().build("1000: 1, 0, 0\n0: 0, 0, 1")
    assert schedule(torch.tensor([500.0])).tolist() == [[[0.5, 0.0, 0.5]]]
    (image,) = nodes["FT2GateHeatmap"]().draw(schedule, 12)
    assert image.ndim == 4 and image.shape[0] == 1 and image.shape[-1] == 3 and 0 <= image.min() <= image.max() <= 1
    (gate,) = nodes["FT2LoadGate"]().load("tiny_gate.safetensors")
    (picture,) = nodes["FT2GateHeatmap"]().draw(gate, 40)
    assert picture.shape[1] < image.shape[1]  # the trained gate has 2 layers: fewer rows than 12


def test_expert_for_another_model_is_refused_when_sampling(ft2, models_dir, tiny_pipeline):
    from ft2_core.tlpo.lora_formats import LoraModule, LoraWeights, save_expert

    wide = LoraWeights({"blocks.0.ffn.0": LoraModule(torch.zeros(2, 48), torch.zeros(64, 2), 2.0)}, "test")
    path = save_expert(wide, models_dir / "loras" / "wide.safetensors", "motion", "other")
    try:
        nodes = ft2.NODE_CLASS_MAPPINGS
        experts = nodes["FT2LoadExperts"]().load(
            motion_lora_name="wide.safetensors",
            motion_strength=1.0,
            lipsync_lora_name="none",
            lipsync_strength=1.0,
            quality_lora_name="none",
            quality_strength=1.0,
        )[0]
        (pipeline,) = nodes["FT2PipelineLoader"]().load("(built-in tiny demo model)", "fp32")
        refusal = "FT2 Load Experts motion_lora_name 'wide.safetensors': blocks.0.ffn.0 is 64x48 but the model's layer is 64x32"
        with pytest.raises(ValueError, match=refusal):
            nodes["FT2Animate"]().animate(
                pipeline, demo_portrait()[None], comfy_audio(0.3), "t", "", 64, 5, 23.0, experts=experts, **SAMPLER
            )
    finally:
        path.unlink()


def test_native_sampler_takes_experts_and_gate_like_the_all_in_one_path(ft2, tiny_pipeline):
    from ft2_core.io.image import fit_image
    from tests.nodes.stand_ins import ClipVisionOutputStandIn, WanVaeStandIn, comfy_conditioning

    nodes = ft2.NODE_CLASS_MAPPINGS
    experts = load_all(nodes, quality=0.5)
    (gate,) = nodes["FT2LoadGate"]().load("tiny_gate.safetensors")
    image, audio = fit_image(demo_portrait(), 64), comfy_audio(0.3, rate=16000, channels=1)
    (model,) = nodes["FT2ModelLoader"]().load("tiny_wan_i2v.safetensors", "tiny_fantasytalking.safetensors", "fp32")
    (wav2vec,) = nodes["FT2Wav2VecLoader"]().load("tiny-wav2vec2")
    embeds, _, frames = nodes["FT2AudioEmbeds"]().encode(wav2vec, audio, 23.0, 9)
    clip_out = ClipVisionOutputStandIn()
    clip_out["penultimate_hidden_states"] = tiny_pipeline.image_encoder.encode(image)
    args = (
        model,
        comfy_conditioning(tiny_pipeline.text_encoder, "talk"),
        comfy_conditioning(tiny_pipeline.text_encoder, "blur"),
        clip_out,
        WanVaeStandIn(tiny_pipeline.vae.model),
        image[None],
        embeds,
    )
    (with_experts,) = nodes["FT2Sampler"]().sample(*args, experts=experts, gate=gate, **SAMPLER)
    (plain,) = nodes["FT2Sampler"]().sample(*args, **SAMPLER)
    assert (with_experts["samples"] - plain["samples"]).abs().max() > 1e-3
    (pipeline,) = nodes["FT2PipelineLoader"]().load("tiny-folder", "fp32")
    all_in_one, _ = nodes["FT2Animate"]().animate(
        pipeline, image[None], audio, "talk", "blur", 64, 9, 23.0, experts=experts, gate=gate, **SAMPLER
    )
    decoded = ((tiny_pipeline.vae.model.decode(with_experts["samples"]).sample[0].permute(1, 2, 3, 0) + 1) / 2).clamp(0, 1)
    torch.testing.assert_close(decoded, all_in_one, rtol=1e-3, atol=2e-3)


def test_other_lora_beside_the_experts_matches_the_library(ft2, models_dir, tiny_pipeline):
    nodes = ft2.NODE_CLASS_MAPPINGS
    (pipeline,) = nodes["FT2PipelineLoader"]().load("(built-in tiny demo model)", "fp32")
    (loras,) = nodes["FT2LoadLora"]().load("tiny_quality.safetensors", 0.6)
    (loras,) = nodes["FT2LoadLora"]().load("tiny_motion.safetensors", 1.2, loras)  # chained
    experts = load_all(nodes)
    image, audio = demo_portrait()[None], comfy_audio(0.3)
    args = (pipeline, image, audio, "talk", "", 64, 9, 23.0)
    with_loras, _ = nodes["FT2Animate"]().animate(*args, experts=experts, loras=loras, **SAMPLER)
    without, _ = nodes["FT2Animate"]().animate(*args, experts=experts, **SAMPLER)
    assert (with_loras - without).abs().max() > 1e-3

    from ft2_core.io.audio import audio_from_waveform
    from ft2_core.pipeline import DEFAULT_NEGATIVE_PROMPT
    from ft2_core.sampling.options import SamplerOptions

    library = tiny_pipeline.animate(
        image[0],
        audio_from_waveform(audio["waveform"], audio["sample_rate"]),
        "talk",
        DEFAULT_NEGATIVE_PROMPT,
        SamplerOptions(**SAMPLER),
        num_frames=9,
        fps=23.0,
        max_side=64,
        experts=[
            Expert(n, load_lora(models_dir / "loras" / f"tiny_{n}.safetensors"), 1.0) for n in ("motion", "lipsync", "quality")
        ],
        loras=[
            Expert("a", load_lora(models_dir / "loras" / "tiny_quality.safetensors"), 0.6),
            Expert("b", load_lora(models_dir / "loras" / "tiny_motion.safetensors"), 1.2),
        ],
    )
    torch.testing.assert_close(with_loras, library.frames, rtol=1e-4, atol=1e-4)


def test_lora_pickers_list_only_wan_loras(ft2, models_dir):
    from safetensors.torch import save_file

    folder = models_dir / "loras"
    sdxl = {"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(2, 8)}
    save_file(sdxl, folder / "sdxl_style.safetensors")
    (folder / "truncated.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":")
    try:
        wan = sorted(p.name for p in folder.glob("tiny_*.safetensors"))
        nodes = ft2.NODE_CLASS_MAPPINGS
        assert nodes["FT2LoadLora"].INPUT_TYPES()["required"]["lora_name"][0] == wan
        assert nodes["FT2LoadExperts"].INPUT_TYPES()["required"]["motion_lora_name"][0] == ["none", *wan]
    finally:
        (folder / "sdxl_style.safetensors").unlink()
        (folder / "truncated.safetensors").unlink()


def test_a_lora_that_does_not_fit_is_named_by_its_node_and_input(ft2, models_dir):
    from ft2_core.tlpo.lora_formats import LoraModule, LoraWeights, save_expert

    wide = LoraWeights({"blocks.0.ffn.0": LoraModule(torch.zeros(2, 48), torch.zeros(64, 2), 2.0)}, "test")
    path = save_expert(wide, models_dir / "loras" / "wide.safetensors", "motion", "other")
    try:
        nodes = ft2.NODE_CLASS_MAPPINGS
        (loras,) = nodes["FT2LoadLora"]().load("wide.safetensors", 1.0)
        (pipeline,) = nodes["FT2PipelineLoader"]().load("(built-in tiny demo model)", "fp32")
        with pytest.raises(ValueError, match="FT2 Load LoRA lora_name 'wide.safetensors': blocks.0.ffn.0 is 64x48"):
            args = (pipeline, demo_portrait()[None], comfy_audio(0.3), "t", "", 64, 5, 23.0)
            nodes["FT2Animate"]().animate(*args, loras=loras, **SAMPLER)
    finally:
        path.unlink()
