import pytest
import torch

from ft2_core.sampling.guidance import audio_guidance_active, guidance_rows


def combine(rows, u, n, p, u_audio):
    value = {(False, False): u, (True, False): n, (True, True): p, (False, True): u_audio}
    return sum(row.weight * value[(row.positive, row.audio)] for row in rows)


@pytest.mark.parametrize("cfg, audio_cfg, rows_needed", [(5.0, 3.0, 3), (5.0, 5.0, 2), (1.0, 3.0, 2), (1.0, 1.0, 1),
                                                        (4.0, 0.0, 2), (1.0, 0.0, 1)])
def test_weights_give_the_formula_with_only_the_rows_needed(cfg, audio_cfg, rows_needed):
    u, n, p, u_audio = torch.tensor(1.0), torch.tensor(2.0), torch.tensor(4.0), torch.tensor(-3.0)
    rows = guidance_rows(cfg, audio_cfg, audio_step=True)
    assert len(rows) == rows_needed and all(row.weight != 0 for row in rows)
    assert combine(rows, u, n, p, u_audio).item() == pytest.approx((u + cfg * (n - u) + audio_cfg * (p - n)).item())
    plain = guidance_rows(cfg, audio_cfg, audio_step=False)
    assert len(plain) == (1 if cfg == 1.0 else 2)
    assert combine(plain, u, n, p, u_audio).item() == pytest.approx((u_audio + cfg * (p - u_audio)).item())


def test_audio_guidance_range_is_half_open():
    active = [audio_guidance_active(i, 10, 0.2, 0.5) for i in range(10)]
    assert active == [False, False, True, True, True, False, False, False, False, False]
    assert all(audio_guidance_active(i, 30, 0.0, 1.0) for i in range(30))
