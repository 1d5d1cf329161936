"""Preference pairs over cached inputs, so training never runs the VAE, text/image encoders or wav2vec2.

A cache folder holds safetensors shards and `index.json` (item -> shard). Items:
  cond/<id>:  condition [4+z, F, h, w], text [512, d], image [257, d] (optional), audio [L, 768], num_frames
  video/<id>: latents [z, F, h, w], lip_mask [1, F, h, w] (optional; none when no face was found)
Pairs are JSONL lines: {"condition", "winner", "loser", "dimension", "scores"?}.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open

from ..checks import changed_settings
from ..dimensions import DIMENSION_NAMES, uses_lip_mask
from ..errors import InputError
from ..io.atomic import write_text_atomic
from ..io.checkpoint_io import save_safetensors
from ..io.jsonl import read_jsonl

INDEX = "index.json"


@dataclass
class Pair:
    condition: str
    winner: str
    loser: str
    dimension: str
    scores: dict = field(default_factory=dict)


def read_pairs(path: str | os.PathLike) -> list[Pair]:
    def check(record):
        if record["dimension"] not in DIMENSION_NAMES:
            return f"dimension must be one of {DIMENSION_NAMES}, got {record['dimension']!r}"

    records = read_jsonl(path, ("condition", "winner", "loser", "dimension"), "pair manifest", check)
    return [Pair(r["condition"], r["winner"], r["loser"], r["dimension"], r.get("scores") or {}) for r in records]


def write_pairs(path: str | os.PathLike, pairs: list[Pair]) -> Path:
    return write_text_atomic(path, "".join(json.dumps(asdict(p), ensure_ascii=False) + "\n" for p in pairs))


def cache_settings(folder: str | os.PathLike) -> dict | None:
    """The settings a cache folder's index records (None: no index, or made before settings were recorded)."""
    index_path = Path(folder) / INDEX
    return json.loads(index_path.read_text()).get("settings") if index_path.is_file() else None


def check_cache_settings(folder, recorded: dict | None, settings: dict | None) -> None:
    """Refuse to add items made with `settings` to a cache recorded as made with others, naming what differs."""
    if settings is None or recorded is None or recorded == settings:
        return
    raise InputError(f"latent cache {folder} was made with {changed_settings(recorded, settings)}: use another folder "
                     "for these settings")


class CacheWriter:
    """Adds items to a cache folder in shards; resumable (items already indexed are kept). `settings` (the model and
    encoding settings that made the items) are recorded in the index; a cache made with other settings is refused,
    naming what differs, rather than silently extended with items that do not match."""

    def __init__(self, folder: str | os.PathLike, shard_size: int = 64, settings: dict | None = None,
                 flush_seconds: float | None = None):
        """`flush_seconds`: also write what is pending once that long has passed since the last write, so a crash
        loses at most that much work however slowly items come."""
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        index_path = self.folder / INDEX
        index = json.loads(index_path.read_text()) if index_path.is_file() else {}
        self.index: dict[str, str] = index.get("items", {})
        check_cache_settings(self.folder, index.get("settings"), settings)
        self.settings = settings if settings is not None else index.get("settings")
        self.shard_size, self.flush_seconds = shard_size, flush_seconds
        self.pending: dict[str, dict[str, torch.Tensor]] = {}
        self.flushed_at = time.monotonic()

    def __contains__(self, item: str) -> bool:
        return item in self.index or item in self.pending

    def add(self, item: str, tensors: dict[str, torch.Tensor]) -> None:
        self.pending[item] = tensors
        overdue = self.flush_seconds is not None and time.monotonic() - self.flushed_at >= self.flush_seconds
        if len(self.pending) >= self.shard_size or overdue:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        shard = f"shard-{len(set(self.index.values())):05d}.safetensors"
        flat = {
            f"{item}/{name}": tensor.contiguous() for item, tensors in self.pending.items() for name, tensor in tensors.items()
        }
        save_safetensors(flat, self.folder / shard, metadata={"ft2.kind": "cache"})
        self.index.update({item: shard for item in self.pending})
        self.pending = {}
        self.write_index()
        self.flushed_at = time.monotonic()

    def write_index(self) -> None:
        index = {"version": 1, "items": self.index, **({"settings": self.settings} if self.settings is not None else {})}
        write_text_atomic(self.folder / INDEX, json.dumps(index, indent=0))

    def adopt(self, part: str | os.PathLike) -> None:
        """Take over the items of another cache folder (one process's share of a multi-process run): its shards are
        linked in under this folder's shard names and indexed here (items already here are kept), then the part is
        removed. A crash midway leaves the part whole, and adopting it again finishes the job."""
        self.flush()
        part = Path(part)
        if (part / INDEX).is_file():
            items = json.loads((part / INDEX).read_text())["items"]
            for shard in sorted(set(items.values())):
                name = f"shard-{len(set(self.index.values())):05d}.safetensors"
                (self.folder / name).unlink(missing_ok=True)  # unindexed: left by an adoption cut short
                os.link(part / shard, self.folder / name)
                self.index.update({item: name for item, held in items.items() if held == shard and item not in self.index})
            self.write_index()
            (part / INDEX).unlink()  # adopted: from here, whatever of the part a crash leaves is only removed
        shutil.rmtree(part)

    def close(self) -> None:
        self.flush()


class LatentCache:
    """Reads cached items by name (shards are memory-mapped and opened once)."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        index_path = self.folder / INDEX
        if not index_path.is_file():
            raise InputError(f"latent cache {self.folder} has no {INDEX}; build it with python -m training.preprocess")
        self.index = json.loads(index_path.read_text())["items"]
        self._handles = {}

    def __contains__(self, item: str) -> bool:
        return item in self.index

    def get(self, item: str) -> dict[str, torch.Tensor]:
        if item not in self.index:
            raise InputError(f"latent cache {self.folder}: no item {item!r}")
        shard = self.index[item]
        if shard not in self._handles:
            self._handles[shard] = safe_open(str(self.folder / shard), framework="pt", device="cpu")
        handle = self._handles[shard]
        prefix = f"{item}/"
        return {key[len(prefix) :]: handle.get_tensor(key) for key in handle.keys() if key.startswith(prefix)}

    def __getstate__(self):  # dataloader workers reopen shards themselves
        return {"folder": self.folder, "index": self.index, "_handles": {}}


class PairDataset(torch.utils.data.Dataset):
    """One item per pair: winner/loser latents, their lip masks (if used) and the shared conditioning."""

    def __init__(self, cache: LatentCache, pairs: list[Pair], use_lip_mask: bool = True):
        missing = [
            p for p in pairs for item in (f"cond/{p.condition}", f"video/{p.winner}", f"video/{p.loser}") if item not in cache
        ]
        if missing:
            raise InputError(f"{len(missing)} pairs refer to items missing from the cache, e.g. {missing[0]}")
        self.cache, self.pairs, self.use_lip_mask = cache, pairs, use_lip_mask

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        pair = self.pairs[index]
        cond = self.cache.get(f"cond/{pair.condition}")
        winner, loser = self.cache.get(f"video/{pair.winner}"), self.cache.get(f"video/{pair.loser}")
        item = {
            "winner": winner["latents"],
            "loser": loser["latents"],
            "condition": cond["condition"],
            "text": cond["text"],
            "audio_features": cond["audio"],
            "num_frames": int(cond["num_frames"]),
            "index": index,
        }
        if "image" in cond:
            item["image"] = cond["image"]
        if self.use_lip_mask and uses_lip_mask(pair.dimension):
            item["mask_w"] = winner.get("lip_mask", torch.ones_like(winner["latents"][:1]))
            item["mask_l"] = loser.get("lip_mask", torch.ones_like(loser["latents"][:1]))
        return item


def collate_pairs(items: list[dict]) -> dict:
    """Stack a batch; pairs in one batch must share frame count and resolution."""
    shapes = {tuple(i["winner"].shape) for i in items} | {tuple(i["loser"].shape) for i in items}
    if len(shapes) != 1 or len({i["num_frames"] for i in items}) != 1:
        raise InputError(f"pairs in a batch differ in latent shape or frame count ({sorted(shapes)}); bucket them")
    batch = {"num_frames": items[0]["num_frames"], "index": torch.tensor([i["index"] for i in items])}
    for key in ("winner", "loser", "condition", "text", "audio_features", "image", "mask_w", "mask_l"):
        present = [i[key] for i in items if key in i]
        if len(present) == len(items):
            batch[key] = torch.stack(present)
        elif present:  # masks for the lip-sync pairs only: the others get full-frame masks
            batch[key] = torch.stack([i.get(key, torch.ones_like(i["winner"][:1])) for i in items])
    return batch
