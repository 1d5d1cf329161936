import pytest
import torch

from ft2_core.errors import InputError
from ft2_core.models.block_swap import BlockSwap
from ft2_core.placement import visiting
from tests.conftest import make_model_inputs

ELSEWHERE = torch.device("cpu", 0)  # compares unequal to the CPU, so every copy really runs here


@pytest.fixture()
def swapping(tiny_model):
    yield tiny_model
    tiny_model.block_swap = None


def test_swapped_model_gives_the_same_numbers(swapping):
    model = swapping
    inputs = make_model_inputs(model, batch=1)
    windows = model.adapter.windows(torch.randn(1, 30, model.adapter.audio_in_dim), 17)
    with torch.no_grad():
        resident = model(**inputs, audio=windows)
        model.swap_blocks(1)
        with visiting(model, "cpu"):  # the CPU's no-op swap: the same code, bit for bit the same numbers
            swapped = model(**inputs, audio=windows)
        with visiting(model, ELSEWHERE):  # real copies: the same values in new buffers
            copied = model(**inputs, audio=windows)
    assert torch.equal(swapped, resident)
    torch.testing.assert_close(copied, resident, rtol=0, atol=1e-6)  # kernels may round differently on new buffers


def test_each_swapped_block_visits_just_before_it_runs_and_leaves_after(swapping, monkeypatch):
    """With both tiny blocks swapped: block 0 comes in, block 1 is prefetched while 0 runs, each leaves after."""
    model = swapping
    model.swap_blocks(2)
    events = []
    bring, after = BlockSwap._bring, BlockSwap.after
    monkeypatch.setattr(BlockSwap, "_bring", lambda self, i, d: events.append(("in", i)) or bring(self, i, d))
    monkeypatch.setattr(BlockSwap, "after", lambda self, i: events.append(("out", i)) or after(self, i))
    hook = [block.attn1.register_forward_pre_hook(lambda m, a, i=i: events.append(("run", i))) for i, block in
            enumerate(model.transformer.blocks)]  # a block starts with its self-attention
    try:
        with torch.no_grad(), visiting(model, ELSEWHERE):
            model(**make_model_inputs(model, batch=1), audio=None)
    finally:
        for h in hook:
            h.remove()
    assert events == [("in", 0), ("in", 1), ("run", 0), ("out", 0), ("run", 1), ("out", 1)]
    assert not model.block_swap.visiting  # nothing left on the device


def test_place_leaves_swapped_blocks_home(swapping):
    """Moving the model for sampling moves every tensor except the swapped blocks' (they wait on the CPU)."""
    model = swapping
    model.swap_blocks(1)
    swapped = model.block_swap.swapped_tensors()
    tensors = [*model.parameters(), *model.buffers()]
    before = [t.data_ptr() for t in tensors]
    model.place(ELSEWHERE)
    try:
        moved = {id(t): t.data_ptr() != pointer for t, pointer in zip(tensors, before)}
    finally:
        model.place("cpu")
    assert swapped and all(not moved[i] for i in swapped)
    assert all(moved[id(t)] for t in tensors if id(t) not in swapped)


def test_bad_counts_are_refused(swapping):
    with pytest.raises(InputError, match="blocks_to_swap must be a whole number from 0 to the model's 2 blocks"):
        swapping.swap_blocks(3)


def test_pipeline_with_swapped_blocks_gives_the_same_video(tiny_dir, tiny_pipeline):
    from ft2_core.demo_inputs import demo_portrait, demo_speech
    from ft2_core.model_paths import ModelPaths
    from ft2_core.pipeline import FantasyTalkingPipeline
    from ft2_core.sampling.options import SamplerOptions

    swapped = FantasyTalkingPipeline.from_paths(ModelPaths.from_folder(tiny_dir), blocks_to_swap=2)
    args = dict(options=SamplerOptions(steps=2, seed=3), max_side=64, num_frames=9)
    video = swapped.animate(demo_portrait(), demo_speech(0.5), **args)
    assert torch.equal(video.latents, tiny_pipeline.animate(demo_portrait(), demo_speech(0.5), **args).latents)


def test_a_cancelled_forward_leaves_no_block_on_the_device(swapping):
    """A cancel between blocks leaves a visitor behind; the next placement sends it home."""
    model = swapping
    model.swap_blocks(2)
    swap = model.block_swap
    swap.before(0, ELSEWHERE)  # block 0 in, block 1 prefetched ... and the run is cancelled here
    assert set(swap.visiting) == {0, 1}
    homes = {id(t): home.data_ptr() for i in swap.visiting for t, home in swap.visiting[i]}
    model.place("cpu")
    assert not swap.visiting
    assert all(t.data_ptr() == homes[id(t)] for i in (0, 1) for part in swap.parts(i) for t in part.parameters())
