import torch

from ft2_core.guidance import audio_guidance_active, dual_guidance, prompt_guidance


def test_dual_guidance_on_scalars():
    u, n, p = torch.tensor(1.0), torch.tensor(2.0), torch.tensor(4.0)
    # 1 + 5 * (2 - 1) + 3 * (4 - 2) = 12
    assert dual_guidance(u, n, p, cfg=5.0, audio_cfg=3.0).item() == 12.0
    assert prompt_guidance(u, p, cfg=2.0).item() == 7.0


def test_audio_guidance_range_is_half_open():
    active = [audio_guidance_active(i, 10, 0.2, 0.5) for i in range(10)]
    assert active == [False, False, True, True, True, False, False, False, False, False]
    assert all(audio_guidance_active(i, 30, 0.0, 1.0) for i in range(30))
