"""Talking-Critic fine-tuning: LoRA on a Qwen2.5-Omni thinker, supervised on Yes/No labels per dimension
(`lora.rank = 0` trains every weight instead and writes a thinker folder: a base for a later LoRA).

    python -m training.train_critic --config training/configs/tiny_critic.toml
    accelerate launch --multi_gpu --num_processes 8 -m training.train_critic --config my_critic.toml

Labels are JSONL lines {"video": "clip.mp4", "motion": "Yes", "lipsync": "No", "quality": "Yes"} (a missing
dimension is simply not trained); the audio is the video's soundtrack. The loss is cross-entropy on the
answer token only; held-out accuracy per dimension is logged. Writes the LoRA with its settings.

Preferences (`data.train_pairs`, optional, beside or instead of the labels) are JSONL lines
{"chosen": "a.mp4", "rejected": "b.mp4", "dimension": "lipsync"}: a rater's "a is better than b", best between
two videos of the same input. Their loss is Bradley-Terry on the answer's Yes-minus-No logit, so the score
P(Yes) learns to order what absolute answers leave tied: two candidates of one portrait and audio differ far
less than two portraits do, and Yes/No labels mostly teach the latter.
"""
from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import torch

from ft2_core.dimensions import DIMENSION_NAMES
from ft2_core.errors import InputError
from ft2_core.io.jsonl import append_jsonl, read_jsonl
from ft2_core.io.video_io import read_video
from ft2_core.scoring.critic import QUANTIZE, TalkingCritic, VideoSettings
from ft2_core.tiny import tiny_critic_dir
from ft2_core.tlpo.lora_formats import MAX_LORA_ALPHA, MAX_LORA_RANK
from training.common.checkpoints import end_of_step, resume, run_settings
from training.common.config import Option, resolve
from training.common.data_order import global_batch
from training.common.distributed import local_batch_size, make_accelerator
from training.common.interrupts import StopRequests
from training.common.metrics import ordered_share
from training.common.precision import DTYPES, base_dtype, check_precision
from training.common.script import run

SCHEMA = {
    # the thinker's dtype (thinker_dtype): auto = bf16 on a GPU for a LoRA (8.9 B parameters: 16.6 GiB, not 33.2), else fp32
    # quantize: the frozen base in 8 or 4 bits (QLoRA, bitsandbytes on a CUDA GPU; the LoRA stays fp32)
    "model": {"folder": Option(str, ""), "cache_dir": Option(str, ""), "dtype": Option(str, "auto", choices=("auto", *DTYPES)),
              "quantize": Option(str, "none", choices=QUANTIZE)},
    "lora": {"rank": Option(int, 8, minimum=0, maximum=MAX_LORA_RANK),
             "alpha": Option(float, 16.0, above=0, maximum=MAX_LORA_ALPHA)},
    "video": {
        "sample_fps": Option(float, 2.0, above=0),
        "max_frames": Option(int, 32, minimum=2),
        "min_pixels": Option(int, 28 * 28 * 4, minimum=28 * 28),
        "max_pixels": Option(int, 224 * 224, minimum=28 * 28),
    },
    "data": {
        "train": Option(str, ""),
        "heldout": Option(str, ""),
        "train_pairs": Option(str, ""),
        "heldout_pairs": Option(str, ""),
    },
    "train": {
        "output": Option(str),
        "allow_changes": Option(list, []),  # settings a resumed run may change (see training.common.checkpoints)
        "steps": Option(int, 500, minimum=1),
        "batch_size": Option(int, 8, minimum=1),
        "pair_batch_size": Option(int, 4, minimum=1),
        "micro_batch_size": Option(int, 0, minimum=0),  # clips (or pairs) per forward, gradients accumulated; 0: all
        "lr": Option(float, 1e-4, above=0),
        "seed": Option(int, 0, minimum=0),
        "checkpoint_every": Option(int, 100, minimum=1),
        "eval_every": Option(int, 100, minimum=1),
        "resume": Option(bool, True),
        "cpu": Option(bool, False),
        "mixed_precision": Option(str, "auto", choices=("auto", "no", "bf16", "fp16")),  # auto: bf16 on a GPU
        "strategy": Option(str, "ddp", choices=("ddp",)),  # FSDP shards the DiT for the DPO trainers only
        "gradient_checkpointing": Option(bool, False),  # recompute the thinker's layers in the backward (TalkingCritic)
    },
}
ANSWERS = {"yes": 1, "no": 0}


def read_labels(path: Path) -> list[dict]:
    def check(record):
        bad = [d for d in DIMENSION_NAMES if d in record and str(record[d]).strip().lower() not in ANSWERS]
        return f"{bad[0]} must be Yes or No, got {record[bad[0]]!r}" if bad else None

    return [
        {"video": path.parent / r["video"], "labels": {d: ANSWERS[str(r[d]).strip().lower()] for d in DIMENSION_NAMES if d in r}}
        for r in read_jsonl(path, ("video",), "label file", check)
    ]


def read_preferences(path: Path) -> list[dict]:
    def check(record):
        if record["dimension"] not in DIMENSION_NAMES:
            return f"dimension must be one of {', '.join(DIMENSION_NAMES)}, got {record['dimension']!r}"
        return "chosen and rejected are the same video" if record["chosen"] == record["rejected"] else None

    return [
        {
            "chosen": path.parent / r["chosen"],
            "rejected": path.parent / r["rejected"],
            "dimension": DIMENSION_NAMES.index(r["dimension"]),
        }
        for r in read_jsonl(path, ("chosen", "rejected", "dimension"), "preference file", check)
    ]


def clip_features(critic: TalkingCritic, records: list[dict], known: dict | None = None):
    """Each record's video read and featurised for the thinker; one already in `known` (video path -> features, filled
    here) is not done again: the labelled candidates are also the videos of the pairs."""
    known = {} if known is None else known
    for record in records:
        path = record["video"].resolve()
        if path not in known:
            frames, fps, audio = read_video(path)
            known[path] = critic.features(frames, fps, audio, path.name)
    return [known[record["video"].resolve()] for record in records]


def pair_clips(critic: TalkingCritic, pairs: list[dict], known: dict | None = None) -> tuple[list, torch.Tensor]:
    """Each video of the pairs featurised once; [pairs, 2] indices of (chosen, rejected) into that list."""
    videos = list(dict.fromkeys(v for p in pairs for v in (p["chosen"], p["rejected"])))
    where = {v: i for i, v in enumerate(videos)}
    features = clip_features(critic, [{"video": v} for v in videos], known)
    return features, torch.tensor([[where[p["chosen"]], where[p["rejected"]]] for p in pairs], dtype=torch.long).view(-1, 2)


def yes_margins(critic: TalkingCritic, features) -> torch.Tensor:
    """[clips, 3] logit(Yes) - logit(No) per dimension: the score's log-odds."""
    logits = critic.answer_logits(features)
    return (logits[:, 0] - logits[:, 1]).view(len(features), len(DIMENSION_NAMES))


def preference_loss(critic: TalkingCritic, features, pairs: list[dict], indices: torch.Tensor,
                    count: int | None = None) -> torch.Tensor:
    """Bradley-Terry: -log sigmoid(margin(chosen) - margin(rejected)) in each pair's dimension; each clip of the
    batch is run once. Summed over these pairs and divided by `count`, the pairs of the whole batch they belong to
    (default: these), so a step's micro-batches add up to its loss."""
    used = indices.unique()
    margins = yes_margins(critic, [features[i] for i in used.tolist()])
    row = {int(v): r for r, v in enumerate(used.tolist())}
    dims = torch.tensor([p["dimension"] for p in pairs], device=margins.device)
    chosen = margins[[row[int(i)] for i in indices[:, 0]], dims]
    rejected = margins[[row[int(i)] for i in indices[:, 1]], dims]
    return -torch.nn.functional.logsigmoid(chosen - rejected).sum() / (len(pairs) if count is None else count)


@torch.no_grad()
def pair_accuracy(critic: TalkingCritic, features, pairs: list[dict], indices: torch.Tensor) -> dict[str, float]:
    """Per dimension, the share of pairs whose chosen video gets the higher score."""
    scores = torch.tensor([[s[d] for d in DIMENSION_NAMES] for s in critic.score(features)])
    result = {}
    for k, dimension in enumerate(DIMENSION_NAMES):
        rows = [r for r, p in enumerate(pairs) if p["dimension"] == k]
        if rows:
            result[dimension] = ordered_share(scores[indices[rows, 0], k], scores[indices[rows, 1], k])
    return result


def label_tensor(records: list[dict]) -> torch.Tensor:
    """[clips, 3] with 1 (Yes), 0 (No) or -1 (unlabelled)."""
    return torch.tensor([[r["labels"].get(d, -1) for d in DIMENSION_NAMES] for r in records])


def answer_loss(yes_no_logits: torch.Tensor, labels: torch.Tensor, count: int | None = None) -> torch.Tensor:
    """Cross-entropy of the answer token between Yes and No (the two logits the score is read from),
    on labelled rows; rows are clip-major like `TalkingCritic.answer_logits`. Summed and divided by `count`, the
    labelled rows of the whole batch (default: these), so a step's micro-batches add up to its loss."""
    flat = labels.flatten().to(yes_no_logits.device)
    keep = flat >= 0
    total = torch.nn.functional.cross_entropy(yes_no_logits[keep], 1 - flat[keep], reduction="sum")  # column 0 = Yes
    return total / (int(keep.sum()) if count is None else count)


@torch.no_grad()
def accuracy(critic: TalkingCritic, features, labels: torch.Tensor, batch_size: int = 8) -> dict[str, float]:
    scores = critic.score(features, batch_size)
    predicted = torch.tensor([[s[d] > 0.5 for d in DIMENSION_NAMES] for s in scores]).long()
    result = {}
    for k, dimension in enumerate(DIMENSION_NAMES):
        labelled = labels[:, k] >= 0
        if labelled.any():
            result[dimension] = float((predicted[labelled, k] == labels[labelled, k]).float().mean())
    return result


def chunks(items: list, size: int) -> list[list]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def thinker_dtype(config: dict) -> str:
    """model.dtype; auto is bf16 on a GPU (fp32 on a CPU) for a LoRA, and fp32 for whole-weight training, whose weights
    AdamW keeps in fp32. A bf16 thinker needs bf16 autocast, where the fp32 LoRA meets it."""
    if int(config["lora"]["rank"]) == 0:
        if config["model"]["quantize"] != "none":
            raise InputError(f'lora.rank = 0 trains every weight, which cannot be stored in {config["model"]["quantize"]}: set '
                             'model.quantize = "none", or train a LoRA over the quantised base')
        if config["model"]["dtype"] not in ("auto", "fp32"):
            raise InputError(f'lora.rank = 0 trains every weight, which AdamW keeps in fp32: set model.dtype = "fp32" or '
                             f'"auto", not "{config["model"]["dtype"]}" (a LoRA trains in fp32 over a bf16 thinker)')
        return "fp32"
    check_precision(config)
    return base_dtype(config)


def train(config: dict) -> Path:
    from tqdm import tqdm

    train = config["train"]
    whole = int(config["lora"]["rank"]) == 0
    dtype = thinker_dtype(config)
    accelerator = make_accelerator(config)
    critic = TalkingCritic.from_folder(config["model"]["folder"] or tiny_critic_dir(config["model"]["cache_dir"] or None),
                                       device=accelerator.device, dtype=DTYPES[dtype], quantize=config["model"]["quantize"])
    if train["gradient_checkpointing"]:
        critic.checkpoint_layers()
    # frames sampled densely and large enough to see the mouth move (Qwen2.5-Omni's own default is 2 fps)
    critic.settings = VideoSettings(**config["video"])
    torch.manual_seed(int(train.get("seed", 0)))  # the LoRA's initial A: same run, same start
    if whole:
        critic.thinker.requires_grad_(True)
        named = dict(critic.thinker.named_parameters())
        parameters = list(named.values())
    else:
        parameters = critic.add_lora(int(config["lora"]["rank"]), float(config["lora"]["alpha"]))
        named = {n: p for n, p in critic.thinker.named_parameters() if "lora_" in n}
    data = config["data"]
    if not data["train"] and not data["train_pairs"]:
        raise InputError("data: give train (Yes/No labels), train_pairs (preferences) or both; both are empty")
    train_records = read_labels(resolve(data["train"])) if data["train"] else []
    train_pairs = read_preferences(resolve(data["train_pairs"])) if data["train_pairs"] else []
    if not train_records and not train_pairs:
        raise InputError(f"data.train ({data['train'] or 'not given'}) and data.train_pairs "
                         f"({data['train_pairs'] or 'not given'}) list nothing to train on: check the files")
    heldout_records = read_labels(resolve(data["heldout"])) if data["heldout"] else []
    known = {}  # video -> features: each video read and featurised once
    train_features, train_labels = clip_features(critic, train_records, known), label_tensor(train_records)
    heldout_features, heldout_labels = clip_features(critic, heldout_records, known), label_tensor(heldout_records)
    heldout_pairs = read_preferences(resolve(data["heldout_pairs"])) if data["heldout_pairs"] else []
    pair_features, pair_indices = pair_clips(critic, train_pairs, known)
    heldout_pair_features, heldout_pair_indices = pair_clips(critic, heldout_pairs, known)
    output = resolve(train["output"])
    output.mkdir(parents=True, exist_ok=True)
    optimizer = torch.optim.AdamW(parameters, lr=float(train["lr"]))
    start = resume(config, output, named, optimizer, accelerator)
    log_path = output / "metrics.jsonl"
    thinker, optimizer = accelerator.prepare(critic.thinker, optimizer)
    critic.forward_module = thinker  # the thinker's forward through the DDP wrapper; critic.thinker stays the module
    rank, batch_size, pair_batch = accelerator.process_index, int(train["batch_size"]), int(train["pair_batch_size"])
    local, local_pairs = local_batch_size(batch_size, accelerator), local_batch_size(pair_batch, accelerator)
    micro = int(train["micro_batch_size"]) or max(local, local_pairs)
    bar = tqdm(total=train["steps"], initial=start, desc="critic", mininterval=2.0, disable=not accelerator.is_main_process)
    with StopRequests() as stop, bar:  # the bar's line ends even when a step fails, so an error starts a line of its own
        for step in range(start, train["steps"]):
            thinker.train()
            indices, chosen = [], []  # this process's clips and pairs of the step
            if train_records:
                indices = global_batch(step, len(train_features), batch_size, train["seed"])[rank * local : (rank + 1) * local]
            if train_pairs:
                chosen = global_batch(step, len(train_pairs), pair_batch, train["seed"] + 1)[
                    rank * local_pairs : (rank + 1) * local_pairs
                ]
            labelled = int((train_labels[indices] >= 0).sum()) if indices else 0

            def label_loss(part):  # its share of the step's mean over labelled answers
                return answer_loss(critic.answer_logits([train_features[i] for i in part]), train_labels[part], labelled)

            def pair_loss(part):  # its share of the step's mean over pairs
                return preference_loss(critic, pair_features, [train_pairs[i] for i in part], pair_indices[part], len(chosen))

            # at most train.micro_batch_size clips (or pairs) per forward, the step's gradients accumulated
            parts = [(label_loss, part) for part in chunks(indices, micro)]
            parts += [(pair_loss, part) for part in chunks(chosen, micro)]
            loss = torch.zeros((), device=accelerator.device)
            for number, (part_loss, part) in enumerate(parts):
                last = number == len(parts) - 1
                with nullcontext() if last else accelerator.no_sync(thinker):  # DDP averages gradients once, at the end
                    value = part_loss(part)
                    accelerator.backward(value)
                loss = loss + value.detach()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            done = step + 1
            record = {"step": done, "loss": float(accelerator.reduce(loss.detach(), reduction="mean"))}
            if (heldout_features or heldout_pairs) and (done % train["eval_every"] == 0 or done == train["steps"]):
                thinker.eval()
                if heldout_features:
                    record["heldout_accuracy"] = accuracy(critic, heldout_features, heldout_labels)
                if heldout_pairs:
                    record["heldout_pair_accuracy"] = pair_accuracy(
                        critic, heldout_pair_features, heldout_pairs, heldout_pair_indices
                    )
            if accelerator.is_main_process:
                bar.update(1)
                bar.set_postfix(loss=f"{record['loss']:.4f}")
                append_jsonl(log_path, record)
            end_of_step(
                stop,
                output,
                done,
                train["steps"],
                train.get("checkpoint_every", 100),
                {"trainable": named},
                optimizer,
                bar,
                accelerator,
                run_settings(config),
            )
    accelerator.wait_for_everyone()
    critic.forward_module = critic.thinker
    if not accelerator.is_main_process:
        return None
    if whole:
        return critic.save_thinker(output / "thinker")
    return critic.save_lora(output / "critic_lora.safetensors", {"ft2.steps": str(train["steps"])})


def main(argv=None) -> int:
    """The command: `python -m training.train_critic --config FILE [--set KEY=VALUE ...]`."""
    return run(train, SCHEMA, argv)


if __name__ == "__main__":
    raise SystemExit(main())
