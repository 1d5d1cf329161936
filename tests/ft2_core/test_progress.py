"""Cancel inside one long forward pass: a check before each layer."""
import pytest
import torch

from ft2_core.progress import checked_between_layers, layers


class Cancelled(Exception):
    pass


def test_layers_are_the_repeated_blocks_what_they_repeat_and_convolutions(tiny_pipeline):
    text = tiny_pipeline.text_encoder.model
    inner = [sublayer for block in text.encoder.block for sublayer in block.layer]
    assert layers(text) == [*text.encoder.block, *inner]
    wav2vec = tiny_pipeline.wav2vec.model
    assert set(layers(wav2vec)) >= {*wav2vec.feature_extractor.conv_layers, *wav2vec.encoder.layers}
    vae = tiny_pipeline.vae.model
    assert set(layers(vae)) >= {*vae.decoder.up_blocks, *vae.decoder.up_blocks[0].resnets}
    convolutions = [m for m in vae.modules() if isinstance(m, torch.nn.Conv3d)]
    assert convolutions and set(convolutions) <= set(layers(vae))  # each takes seconds at full resolution on a CPU
    transformer_blocks = set(tiny_pipeline.model.transformer.blocks)
    assert transformer_blocks <= set(layers(tiny_pipeline.model))
    assert not any(isinstance(layer, torch.nn.Linear) for layer in layers(tiny_pipeline.model))  # single ops are not layers


def test_a_cancel_stops_the_pass_before_the_next_layer(tiny_pipeline):
    text = tiny_pipeline.text_encoder
    ran = []
    handles = [block.register_forward_hook(lambda *_: ran.append(1)) for block in text.model.encoder.block]

    def cancel_after_one_layer():
        if ran:
            raise Cancelled

    try:
        with pytest.raises(Cancelled), checked_between_layers([text.model], cancel_after_one_layer):
            text.encode(["a person talks"])
        assert len(ran) == 1 and len(text.model.encoder.block) > 1
        text.encode(["a person talks"])  # the checks are gone after the block
        assert len(ran) == 1 + len(text.model.encoder.block)
    finally:
        for handle in handles:
            handle.remove()
