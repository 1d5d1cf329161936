import torch
from torch import nn

from ft2_core.demo_inputs import demo_portrait, demo_speech
from ft2_core.placement import visiting
from ft2_core.sampling.options import SamplerOptions

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


def test_each_component_visits_the_device_alone(tiny_pipeline):
    """Encoders, the VAE and the DiT are each on the compute device only for their own stage: the peak is the
    largest stage, not the sum (umT5-XXL is never beside the 14B DiT)."""
    events = []
    parts = {"text": tiny_pipeline.text_encoder.model, "image": tiny_pipeline.image_encoder.model,
             "wav2vec": tiny_pipeline.wav2vec.model, "vae": tiny_pipeline.vae.model, "dit": tiny_pipeline.model}
    originals = {name: spy_moves(module, name, events) for name, module in parts.items()}
    hook = tiny_pipeline.model.register_forward_pre_hook(lambda *_: events.append(("forward", None)))
    try:
        tiny_pipeline.to(ELSEWHERE)
        tiny_pipeline.animate(demo_portrait(), demo_speech(0.5), options=SamplerOptions(steps=2), max_side=64, num_frames=9)
    finally:
        hook.remove()
        tiny_pipeline.to("cpu")
        for name, module in parts.items():
            module.to = originals[name]
    home = torch.device("cpu")
    where = {name: home for name in parts}
    forwards = 0
    for name, device in events:
        if name == "forward":
            forwards += 1
            assert where["dit"] == ELSEWHERE and all(d == home for n, d in where.items() if n != "dit"), where
        else:
            where[name] = device
            assert sum(d == ELSEWHERE for d in where.values()) <= 1, where  # one visitor at a time
    visits = [name for name, device in events if device == ELSEWHERE]
    assert forwards == 2 and visits == ["text", "image", "vae", "wav2vec", "dit", "vae"]  # the VAE encodes, then decodes
    assert all(d == home for d in where.values())


def test_keep_on_device_loads_everything_there_once(tiny_dir):
    from ft2_core.model_paths import ModelPaths
    from ft2_core.pipeline import FantasyTalkingPipeline

    pipe = FantasyTalkingPipeline.from_paths(ModelPaths.from_folder(tiny_dir), "cpu", keep_on_device=True)
    events = []
    for module in pipe.modules():
        spy_moves(module, "any", events)
    pipe.animate(demo_portrait(), demo_speech(0.5), options=SamplerOptions(steps=1), max_side=64, num_frames=9)
    assert events == []  # already where it computes: no visit moves anything
