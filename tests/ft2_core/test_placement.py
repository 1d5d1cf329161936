import torch
from torch import nn

from ft2_core.demo_inputs import demo_portrait, demo_speech
from ft2_core.placement import visiting
from ft2_core.sampler import SamplerOptions

ELSEWHERE = torch.device("cpu", 0)  # a device that compares unequal to the CPU, so the moves really happen here


def spy_moves(module: nn.Module, name: str, events: list):
    original = module.to

    def to(*args, **kwargs):
        events.append((name, torch.device(args[0])))
        return original(*args, **kwargs)

    module.to = to
    return original


def test_visiting_moves_there_and_back():
    events = []
    layer = nn.Linear(2, 2)
    spy_moves(layer, "layer", events)
    with visiting(layer, ELSEWHERE):
        events.append(("inside", None))
    with visiting(layer, "cpu"):  # already there: no move
        pass
    assert events == [("layer", ELSEWHERE), ("inside", None), ("layer", torch.device("cpu"))]


def test_encoders_and_vae_leave_the_device_before_sampling(tiny_pipeline):
    """Each encoder (and the VAE) is on the compute device only during its own call; the DiT samples alone."""
    events = []
    parts = {"text": tiny_pipeline.text_encoder.model, "image": tiny_pipeline.image_encoder.model,
             "wav2vec": tiny_pipeline.wav2vec.model, "vae": tiny_pipeline.vae.model}
    originals = {name: spy_moves(module, name, events) for name, module in parts.items()}
    hook = tiny_pipeline.model.register_forward_pre_hook(lambda *_: events.append(("dit", None)))
    try:
        tiny_pipeline.to(ELSEWHERE)
        tiny_pipeline.animate(demo_portrait(), demo_speech(0.5), options=SamplerOptions(steps=2), max_side=64, num_frames=9)
    finally:
        hook.remove()
        tiny_pipeline.to("cpu")
        for name, module in parts.items():
            module.to = originals[name]
    assert {name for name, _ in events} == {"text", "image", "wav2vec", "vae", "dit"}
    where = {name: torch.device("cpu") for name in parts}
    for name, device in events:
        if name == "dit":
            assert all(d == torch.device("cpu") for d in where.values()), where
        else:
            where[name] = device
    visits = [name for name, device in events if device == ELSEWHERE]
    assert visits == ["text", "image", "vae", "wav2vec", "vae"]  # encoders once each, the VAE to encode and to decode
    assert all(d == torch.device("cpu") for d in where.values())
