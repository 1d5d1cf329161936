"""The sync model's trainer writes a complete model folder that the reader loads, the same one for the same seed."""
import json

from ft2_core.miniature.sync_model import SyncModel
from ft2_core.miniature.world import make_clip
from training.miniature import train_sync


def test_a_short_run_writes_a_loadable_model(tmp_path):
    out = tmp_path / "sync"
    assert train_sync.main(["--out", str(out), "--clips", "3", "--steps", "5"]) == 0
    assert json.loads((out / "ft2_produced_by.json").read_text())["command"].endswith("--clips 3 --steps 5")
    clip = make_clip(1)
    reading = SyncModel.load(out).read(clip.frames, clip.audio, clip.fps, clip.portrait)
    assert -8 <= reading.offset <= 8 and reading.distance >= 0


def test_a_seed_gives_the_same_model_and_another_seed_another(tmp_path):
    weights = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        assert train_sync.main(["--out", str(tmp_path / name), "--clips", "2", "--steps", "3", "--seed", str(seed)]) == 0
        weights[name] = (tmp_path / name / "sync_model.safetensors").read_bytes()
    assert weights["a"] == weights["b"] != weights["c"]
