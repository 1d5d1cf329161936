"""The memory plan's two instruments: the live-allocation peak, and module sizes against Wan's published ones."""
import torch

from bench.memory_plan import GIB, live_peak, module_sizes, plan


def test_live_peak_sees_what_is_alive_at_once():
    def work():
        a = torch.empty(1024, 1024)  # 4 MiB
        b = torch.empty(2048, 1024)  # 8 MiB, beside a: 12 MiB live
        del a, b
        c = torch.empty(512, 1024)  # 2 MiB after both are gone
        del c

    assert live_peak(work) == 12 * 2**20


def test_module_sizes_match_the_real_files():
    """Counted on the meta device against the real files' sizes in bf16: Wan2.1-I2V-14B's DiT 30.6 GiB (16.4 B
    parameters), FantasyTalking's adapter 1.6 GiB, umT5-XXL 10.6 GiB, CLIP ViT-H/14's vision tower 1.2 GiB, the Wan
    VAE 127 M parameters (508 MB in fp32), wav2vec2-base 94 M parameters."""
    sizes = module_sizes()
    dit = sizes["blocks"] * (sizes["block_linear"] + sizes["block_other"]) + sizes["dit_rest"]
    assert sizes["blocks"] == 40 and abs(dit / 16.4e9 - 1) < 0.01
    assert abs(sizes["adapter"] * 2 / 1.68e9 - 1) < 0.01
    assert abs(sizes["text"] * 2 / 11.36e9 - 1) < 0.01
    assert abs(sizes["clip"] * 2 / 1.26e9 - 1) < 0.02
    assert abs(sizes["vae"] * 2 / 254e6 - 1) < 0.01
    assert abs(sizes["wav2vec"] / 94.4e6 - 1) < 0.01


def test_visiting_peak_is_the_largest_stage_and_resident_the_sum():
    sizes = {"blocks": 40, "block_linear": 400e6, "block_other": 1e6, "dit_rest": 200e6, "adapter": 800e6, "experts": 400e6,
             "merge_scratch": 150e6, "text": 5.7e9, "clip": 630e6, "vae": 127e6, "wav2vec": 94e6}
    per_token = {"whole": 100e3, "chunked": 90e3}
    visiting = plan(sizes, per_token, 9000.0, "720p", "bf16", 0, False, False, False, resident=False)
    resident = plan(sizes, per_token, 9000.0, "720p", "bf16", 0, False, False, False, resident=True)
    assert visiting["peak"] == max(visiting["stages"].values()) == visiting["stages"]["sampling"]
    assert resident["peak"] == sum(resident["stages"].values())
    tokens = 21 * 45 * 80  # 81 frames at 720p
    assert visiting["activations"] == 2 * tokens * 100e3
    swapped = plan(sizes, per_token, 9000.0, "720p", "fp8", 20, True, False, False, resident=False)
    block_fp8 = 400e6 * 1 + 1e6 * 2
    assert swapped["dit"] == (20 + 2) * block_fp8 + 200e6 * 2 + 800e6 * 2
    assert swapped["peak"] < visiting["peak"] < resident["peak"] and resident["peak"] > 40 * GIB


def test_training_plan_adds_weights_trained_state_and_the_rows_in_flight():
    from bench.memory_plan import net_and_peak
    from bench.train_memory_plan import HIDDEN_BYTES, OPTIMIZER_BYTES, train_plan

    sizes = {"blocks": 40, "block_linear": 400e6, "block_other": 1e6, "dit_rest": 200e6, "adapter": 800e6, "experts": 600e6}
    per_token = {"saved": 300e3, "backward": 30e3}
    tokens = 21 * 30 * 52  # 81 frames at 480p
    plain = train_plan(sizes, per_token, "expert", "480p", "bf16", 0, False, False, False)
    block_bf16 = 400e6 * 2 + 1e6 * 2 + 800e6 / 40 * 2
    assert plain["weights"] == 40 * block_bf16 + 200e6 * 2
    assert plain["parameters"] == 600e6 / 3 * 16 / 32 * OPTIMIZER_BYTES  # one rank-16 expert, fp32 + grad + AdamW
    assert plain["activations"] == 2 * tokens * 300e3 * 40 + 2 * tokens * 30e3  # winner and loser, every block
    lean = train_plan(sizes, per_token, "expert", "480p", "fp8", 30, True, True, True)
    block_fp8 = 400e6 * 1 + 1e6 * 2 + 800e6 / 40 * 2
    assert lean["weights"] == (10 + 2) * block_fp8 + 200e6 * 2  # 10 resident, 2 staged
    assert lean["activations"] == tokens * (300e3 + 30e3)  # one row, one block's worth
    checkpointed = train_plan(sizes, per_token, "expert", "480p", "fp8", 30, True, False, True)
    assert checkpointed["activations"] == tokens * HIDDEN_BYTES * 40 + tokens * (300e3 + 30e3)
    assert lean["peak"] < checkpointed["peak"] < plain["peak"]

    def work():
        kept.append(torch.empty(1024, 1024))  # 4 MiB kept
        scratch = torch.empty(2048, 1024)  # 8 MiB, gone at the end
        del scratch

    kept = []
    assert net_and_peak(work) == (4 * 2**20, 12 * 2**20)
