import json

import pytest
import torch

from ft2_core.errors import InputError
from ft2_core.tlpo.preference_data import CacheWriter, LatentCache, Pair, PairDataset, collate_pairs, read_pairs, write_pairs


def cond_item(frames=9):
    return {"condition": torch.randn(20, 3, 8, 8), "text": torch.randn(512, 32), "audio": torch.randn(19, 32),
            "num_frames": torch.tensor(frames)}


def test_cache_round_trip_and_resume(tmp_path):
    writer = CacheWriter(tmp_path, shard_size=2)
    tensors = {f"video/v{i}": {"latents": torch.randn(16, 3, 8, 8)} for i in range(5)}
    for key, value in tensors.items():
        writer.add(key, value)
    writer.close()
    assert len(list(tmp_path.glob("shard-*.safetensors"))) == 3
    resumed = CacheWriter(tmp_path, shard_size=2)  # a restarted preprocessing run keeps what is done
    assert "video/v4" in resumed and "video/v5" not in resumed
    resumed.add("video/v5", {"latents": torch.zeros(1)})
    resumed.close()
    cache = LatentCache(tmp_path)
    for key, value in tensors.items():
        assert torch.equal(cache.get(key)["latents"], value["latents"])
    assert torch.equal(cache.get("video/v5")["latents"], torch.zeros(1))
    with pytest.raises(InputError, match="no item 'video/v9'"):
        cache.get("video/v9")


def test_manifest_round_trip_and_errors(tmp_path):
    pairs = [Pair("c1", "a", "b", "lipsync", {"a": 0.9, "b": 0.1}), Pair("c2", "x", "y", "motion")]
    path = write_pairs(tmp_path / "pairs.jsonl", pairs)
    assert read_pairs(path) == pairs
    (tmp_path / "bad.jsonl").write_text(json.dumps({"condition": "c", "winner": "a", "loser": "b", "dimension": "style"}) + "\n")
    with pytest.raises(InputError, match="bad.jsonl:1: dimension must be one of"):
        read_pairs(tmp_path / "bad.jsonl")
    (tmp_path / "broken.jsonl").write_text("{not json\n")
    with pytest.raises(InputError, match="broken.jsonl:1: not a JSON line"):
        read_pairs(tmp_path / "broken.jsonl")


def test_dataset_masks_and_collate(tmp_path):
    writer = CacheWriter(tmp_path)
    writer.add("cond/c", cond_item())
    writer.add("video/w", {"latents": torch.randn(16, 3, 8, 8), "lip_mask": torch.ones(1, 3, 8, 8)})
    writer.add("video/l", {"latents": torch.randn(16, 3, 8, 8)})  # no face found: no mask
    writer.add("video/big", {"latents": torch.randn(16, 3, 16, 16)})
    writer.close()
    cache = LatentCache(tmp_path)
    data = PairDataset(cache, [Pair("c", "w", "l", "lipsync"), Pair("c", "w", "l", "motion"), Pair("c", "big", "l", "motion")])
    lipsync = data[0]
    assert torch.equal(lipsync["mask_l"], torch.ones(1, 3, 8, 8))  # full-frame fallback
    batch = collate_pairs([data[0], data[1]])
    assert batch["winner"].shape == (2, 16, 3, 8, 8) and batch["mask_w"].shape == (2, 1, 3, 8, 8)
    assert torch.equal(batch["mask_w"][1], torch.ones(1, 3, 8, 8))  # the motion pair gets a full-frame mask
    with pytest.raises(InputError, match="differ in latent shape"):
        collate_pairs([data[1], data[2]])
    with pytest.raises(InputError, match="missing from the cache"):
        PairDataset(cache, [Pair("c", "w", "nope", "motion")])


def test_a_slow_cache_is_written_on_time_not_only_when_a_shard_fills(tmp_path, monkeypatch):
    """Items that come slowly (a real clip takes seconds to encode) are on disk within flush_seconds of the last write."""
    import time

    clock = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    writer = CacheWriter(tmp_path / "cache", shard_size=64, flush_seconds=60)
    writer.add("video/a", {"latents": torch.zeros(2)})
    assert not (tmp_path / "cache" / "index.json").exists()  # 0 s since the last write: pending
    clock[0] += 61
    writer.add("video/b", {"latents": torch.ones(2)})  # a minute on: both written, as a crash now would lose them
    assert set(LatentCache(tmp_path / "cache").index) == {"video/a", "video/b"}
