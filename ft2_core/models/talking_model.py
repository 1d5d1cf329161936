"""Wan2.1 I2V DiT with the FantasyTalking audio adapter: one forward pass with audio cross-attention.

The forward walks diffusers' `WanTransformer3DModel` submodules itself so that the audio windows and
the per-sample audio scale reach each block's cross-attention explicitly (no hidden per-call state,
so gradient checkpointing recomputes exactly what ran).
"""
from __future__ import annotations

import math
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from diffusers import WanTransformer3DModel
from diffusers.models.attention_dispatch import dispatch_attention_fn
from diffusers.models.transformers.transformer_wan import WanTransformerBlock
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..errors import InputError
from .attention import attention_kernel
from .audio_adapter import AudioAdapter, AudioKeyValue
from .audio_windows import AudioWindows
from .block_recompute import RecomputedBlock
from .deviation_prior import skip_weights
from .fused_lora import set_block_gate


def _attend(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, heads: int, mask=None) -> torch.Tensor:
    """Attention over [B, N, heads*d] projections; returns [B, N, heads*d]. Without a mask it goes through diffusers'
    dispatch (the backend chosen with models.attention, SDPA by default); with one (the audio windows' boolean mask,
    the folded text padding's bias), SDPA."""
    if mask is None:
        q, k, v = (t.unflatten(-1, (heads, -1)) for t in (query, key, value))
        return dispatch_attention_fn(q, k, v).flatten(2)
    q, k, v = (t.unflatten(-1, (heads, -1)).transpose(1, 2) for t in (query, key, value))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask if mask.dtype == torch.bool else mask.to(q.dtype))
    return out.transpose(1, 2).flatten(2)


def audio_attention(query: torch.Tensor, kv: AudioKeyValue, audio: AudioWindows, heads: int) -> torch.Tensor:
    """Each latent frame's video tokens attend to their own audio window (padding masked).

    query: [B, F*S, D] (frame-major tokens, after the block's text q-norm); audio.tokens: [B, F, W, C].
    """
    batch, tokens, dim = query.shape
    frames, width = audio.tokens.shape[1:3]
    if tokens % frames:
        raise InputError(f"audio windows are for {frames} latent frames but the video has {tokens} tokens")
    q = query.reshape(batch * frames, tokens // frames, dim)
    k = kv.k_proj(audio.tokens).reshape(batch * frames, width, dim)
    v = kv.v_proj(audio.tokens).reshape(batch * frames, width, dim)
    mask = audio.key_mask.repeat(batch, 1)[:, None, None, :]  # [B*F, 1, 1, W]
    out = _attend(q, k, v, heads, mask)
    empty = (audio.lengths == 0).repeat(batch)
    if empty.any():  # a window with no valid token contributes nothing (SDPA would give NaN)
        out = out.masked_fill(empty[:, None, None], 0.0)
    return out.reshape(batch, tokens, dim)


def folded_padding(text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The text tokens with their run of identical last tokens kept once, and the attention bias (log of the run's
    length on that token) that gives the one key the weight of all its copies; None where no token repeats.

    Wan pads every prompt to 512 tokens with zeros, which the text embedder turns into one repeated token, so the
    text attention mostly attends to copies. Softmax over n equal logits s is exp(s + log n), so the result is the
    same (to rounding) while the keys fall from 512 to the prompt's length + 1. Rows of a batch (prompt and negative
    prompt) may be padded to different lengths: the shortest run is folded, longer ones keep their extra copies as keys.
    Parameters get the same gradients; the input's copies share theirs at the one kept (the padding is not learned).
    In bf16 the bias is rounded to bf16 (SDPA takes a mask of the query's dtype), as the logits it is added to are.
    """
    repeats = (text == text[:, -1:]).all(-1).flip(1).int().cumprod(1).sum(1)  # [B]: each row's run of last tokens
    run = int(repeats.min())
    if run < 2:
        return text, None
    bias = text.new_zeros(1, 1, 1, text.shape[1] - run + 1)
    bias[..., -1] = math.log(run)
    return text[:, : text.shape[1] - run + 1], bias


def cross_attention(attn, kv, hidden, text, image, audio, audio_rows, audio_scale, text_bias=None) -> torch.Tensor:
    """Wan I2V cross-attention (text + CLIP image) plus FantasyTalking's audio attention.

    The audio branch reuses the text query after its q-norm; its output times the per-sample audio
    scale joins the text and image outputs before the shared output projection. It runs only for the
    rows in `audio_rows` (rows whose scale is zero would add nothing).
    """
    query = attn.norm_q(attn.to_q(hidden))
    out = _attend(query, attn.norm_k(attn.to_k(text)), attn.to_v(text), attn.heads, text_bias)
    if image is not None:
        out = out + _attend(query, attn.norm_added_k(attn.add_k_proj(image)), attn.add_v_proj(image), attn.heads)
    if audio is not None and audio_rows.numel():
        audio_out = audio_attention(query.index_select(0, audio_rows), kv, audio.select(audio_rows), attn.heads)
        audio_out = audio_out * audio_scale.index_select(0, audio_rows)[:, None, None].to(audio_out.dtype)
        out = out.index_add(0, audio_rows, audio_out)
    return attn.to_out[0](out)


def feed_forward(ffn, hidden: torch.Tensor, chunk_tokens: int = 0) -> torch.Tensor:
    """The block's FFN, on `chunk_tokens` tokens at a time when set: its wide hidden layer (13,824 at 14B)
    then exists for one chunk only. Token-wise, so the result is the same."""
    if not chunk_tokens or hidden.shape[1] <= chunk_tokens:
        return ffn(hidden)
    return torch.cat([ffn(part) for part in hidden.split(chunk_tokens, dim=1)], dim=1)


@contextmanager
def ffn_chunking(model, chunk_tokens: int):
    """Run `model`'s feed-forwards in token chunks for a while (a no-op for models without the setting)."""
    if not hasattr(model, "ffn_chunk_tokens"):
        yield
        return
    before, model.ffn_chunk_tokens = model.ffn_chunk_tokens, chunk_tokens
    try:
        yield
    finally:
        model.ffn_chunk_tokens = before


def block_forward(block, kv, hidden, text, image, modulation, rotary, audio, audio_rows, audio_scale, expert_gate=None,
                  ffn_chunk=0, text_bias=None):
    """One Wan2.1 block (self-attn, cross-attn with audio, FFN), as diffusers' `WanTransformerBlock`.

    `expert_gate` [B, K] is this layer's expert mix; it is handed to the block's fused Linears inside
    this function, so a checkpointed block recomputes with the same weights.
    """
    if expert_gate is not None:
        set_block_gate(block, expert_gate)
    shift, scale, gate, c_shift, c_scale, c_gate = (block.scale_shift_table + modulation.float()).chunk(6, dim=1)
    normed = (block.norm1(hidden.float()) * (1 + scale) + shift).type_as(hidden)
    hidden = (hidden.float() + block.attn1(normed, None, None, rotary) * gate).type_as(hidden)
    normed = block.norm2(hidden.float()).type_as(hidden)
    hidden = hidden + cross_attention(block.attn2, kv, normed, text, image, audio, audio_rows, audio_scale, text_bias)
    normed = (block.norm3(hidden.float()) * (1 + c_scale) + c_shift).type_as(hidden)
    hidden = (hidden.float() + feed_forward(block.ffn, normed, ffn_chunk).float() * c_gate).type_as(hidden)
    if expert_gate is not None:
        set_block_gate(block, None)
    return hidden


class AudioWanBlock(WanTransformerBlock):
    """Wan's block, whose forward is FantasyTalking's (`block_forward`, with the audio cross-attention) when given the
    block's audio k/v, and diffusers' own otherwise. The model calls each block as a module, so module hooks run
    around it: FSDP gathers a sharded block's weights there."""

    def forward(self, *args, audio_kv: AudioKeyValue | None = None, **kwargs):
        if audio_kv is None:
            return super().forward(*args, **kwargs)
        return block_forward(self, audio_kv, *args, **kwargs)


PREDICTIONS = ("velocity", "sample_from_reference", "sample_with_skip")
SIGMA_FLOOR = 0.02  # x0 -> velocity divides by sigma; the sampler never goes below ~0.1


class FantasyTalkingModel(nn.Module):
    """The DiT and the audio adapter; `forward` predicts the flow velocity v = noise - x0.

    `prediction` says what the DiT's own output is: "velocity" (Wan2.1), or "sample_from_reference"
    (the miniature model: the clean latents as a change from the reference frame, turned into a
    velocity here), or "sample_with_skip" (that change, part passed straight from the noisy latents under a Gaussian
    prior of it, `deviation_prior` = (basis, spread): see models.deviation_prior).
    A pixel-block latent has more values per token than a small DiT's width, so a velocity (which carries
    the noise) cannot pass its bottleneck, while the clean video can.
    """

    def __init__(self, transformer: WanTransformer3DModel, adapter: AudioAdapter, prediction: str = "velocity",
                 deviation_prior: tuple[torch.Tensor, torch.Tensor] | None = None):
        super().__init__()
        layers, dim = len(transformer.blocks), transformer.config.num_attention_heads * transformer.config.attention_head_dim
        if len(adapter.blocks) != layers or adapter.blocks[0].k_proj.out_features != dim:
            raise InputError(
                f"audio adapter has {len(adapter.blocks)} layers of width {adapter.blocks[0].k_proj.out_features}; "
                f"the DiT has {layers} layers of width {dim}"
            )
        if prediction not in PREDICTIONS:
            raise InputError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
        if (prediction == "sample_with_skip") != (deviation_prior is not None):
            raise InputError('a deviation prior goes with prediction "sample_with_skip" and only with it '
                             f"(prediction {prediction!r}, prior {'given' if deviation_prior is not None else 'missing'})")
        for block in transformer.blocks:  # the same block and weights, called with the audio (see AudioWanBlock)
            if type(block) is WanTransformerBlock:
                block.__class__ = AudioWanBlock
        self.transformer = transformer
        self.adapter = adapter
        self.prediction = prediction
        if deviation_prior is not None:  # buffers: they move with the model and are kept in its checkpoints
            basis, spread = deviation_prior
            channels = transformer.config.out_channels
            if basis.shape != (channels, channels) or spread.shape != (channels,):
                raise InputError(f"deviation prior: basis {tuple(basis.shape)} and spread {tuple(spread.shape)} do not "
                                 f"describe the DiT's {channels} latent channels")
            self.register_buffer("deviation_basis", basis.float().clone())
            self.register_buffer("deviation_spread", spread.float().clone())
        self.gradient_checkpointing = False
        self.offload_checkpoints = False  # training: keep each block's checkpointed input on the CPU (block_recompute)
        self.ffn_chunk_tokens = 0  # see feed_forward
        self.block_swap = None  # a BlockSwap when some blocks wait on the CPU (see swap_blocks)
        self.attention = "sdpa"  # the attention kernel (models.attention); flash / sage when installed
        self.expert_gate: nn.Module | None = None  # set with experts (see experts.experts_attached)
        self.expert_names: tuple[str, ...] = ()

    @property
    def num_layers(self) -> int:
        return len(self.transformer.blocks)

    def swap_blocks(self, count: int) -> "FantasyTalkingModel":
        """Keep the last `count` blocks on the CPU, visiting the device one at a time (models.block_swap); 0 turns it off."""
        from .block_swap import BlockSwap

        swap = BlockSwap(self, count)
        self.block_swap = swap if count else None
        swap.place("cpu")
        return self

    def place(self, device) -> "FantasyTalkingModel":
        """Move to `device` for sampling; swapped blocks stay on the CPU (they visit block by block)."""
        if self.block_swap is None:
            return self.to(device)
        self.block_swap.place(device)
        return self

    def forward(
        self,
        latents: torch.Tensor,
        condition: torch.Tensor,
        timestep: torch.Tensor,
        text: torch.Tensor,
        image: torch.Tensor | None,
        audio: AudioWindows | None,
        audio_scale: float | torch.Tensor = 1.0,
    ) -> torch.Tensor:
        """latents [B,C,F,H,W] + I2V condition [B,C',F,H,W] at `timestep` [B] (0..1000) -> velocity [B,C,F,H,W]."""
        t = self.transformer
        x = torch.cat([latents, condition], dim=1)
        batch, _, frames, height, width = x.shape
        p_t, p_h, p_w = t.config.patch_size
        rotary = t.rope(x)
        hidden = t.patch_embedding(x).flatten(2).transpose(1, 2).contiguous()
        temb, modulation, text_ctx, image_ctx = t.condition_embedder(timestep, text, image)
        text_ctx, text_bias = folded_padding(text_ctx)  # once per forward: every block attends to the same text
        modulation = modulation.unflatten(1, (6, -1))
        scale = torch.as_tensor(audio_scale, dtype=torch.float32, device=x.device).expand(batch)
        audio_rows = scale.nonzero().flatten() if audio is not None else scale.new_zeros(0, dtype=torch.long)
        gates = None
        if self.expert_gate is not None:  # [B, layers, K]; a mix without layers gives [B, 1, K]
            gates = self.expert_gate(timestep.float()).expand(-1, self.num_layers, -1)
            if not torch.is_grad_enabled() and bool((timestep == timestep[:1]).all()):
                gates = gates[:1]  # one timestep for every row (sampling): one mix serves the batch (see experts)
        with attention_kernel(self.attention):
            hidden = self._blocks(hidden, text_ctx, text_bias, image_ctx, modulation, rotary, audio, audio_rows, scale, gates)
        shift, head_scale = (t.scale_shift_table + temb.unsqueeze(1)).chunk(2, dim=1)
        hidden = (t.norm_out(hidden.float()) * (1 + head_scale) + shift).type_as(hidden)
        hidden = t.proj_out(hidden)
        hidden = hidden.reshape(batch, frames // p_t, height // p_h, width // p_w, p_t, p_h, p_w, -1)
        out = hidden.permute(0, 7, 1, 4, 2, 5, 3, 6).flatten(6, 7).flatten(4, 5).flatten(2, 3)
        if self.prediction == "velocity":
            return out
        reference = condition[:, -latents.shape[1]:, :1].float()  # the I2V latents of the given first frame
        sigma = (timestep.float() / 1000).clamp(min=SIGMA_FLOOR).view(-1, 1, 1, 1, 1)
        deviation = out.float()
        if self.prediction == "sample_with_skip":  # in the prior's principal directions
            keep, scale = skip_weights(sigma, self.deviation_spread)
            noisy = torch.einsum("kc,bcfhw->bkfhw", self.deviation_basis, latents.float() - (1 - sigma) * reference)
            deviation = torch.einsum("kc,bkfhw->bcfhw", self.deviation_basis, keep * noisy + scale * deviation)
        return ((latents.float() - (reference + deviation)) / sigma).to(out.dtype)

    def _blocks(self, hidden, text_ctx, text_bias, image_ctx, modulation, rotary, audio, audio_rows, scale, gates):
        """Every block in turn. Training with block swap recomputes each block in the backward (models.block_recompute),
        its input on the CPU with offloaded checkpoints; gradient checkpointing without swap uses torch's, the input
        it keeps moved to the CPU with offloaded checkpoints (FSDP gathers the block again through its hooks when it is
        recomputed); sampling visits swapped blocks."""
        t, swap, training = self.transformer, self.block_swap, torch.is_grad_enabled()
        for index, (block, kv) in enumerate(zip(t.blocks, self.adapter.blocks)):
            layer_gate = None if gates is None else gates[:, index]
            context = (text_ctx, image_ctx, modulation, rotary, audio, audio_rows, scale)

            def run(hidden, layer_gate, block=block, kv=kv, context=context):
                return block(hidden, *context, layer_gate, self.ffn_chunk_tokens, text_bias, audio_kv=kv)

            if training and swap is not None:
                device = hidden.device
                trainable = [p for part in (block, kv) for p in part.parameters() if p.requires_grad]
                hidden = RecomputedBlock.apply(
                    run, lambda forward, i=index: swap.before(i, device, i + 1 if forward else i - 1),
                    lambda i=index: swap.after(i), self.offload_checkpoints, hidden, layer_gate, *trainable)
            elif training and self.offload_checkpoints:  # the checkpoint keeps only its CPU input; it returns on recompute
                hidden = checkpoint(lambda kept, gate, run=run, device=hidden.device: run(kept.to(device), gate),
                                    hidden.to("cpu"), layer_gate, use_reentrant=False)
            elif training and self.gradient_checkpointing:
                hidden = checkpoint(run, hidden, layer_gate, use_reentrant=False)
            else:
                if swap is not None:
                    swap.before(index, hidden.device)
                hidden = run(hidden, layer_gate)
                if swap is not None:
                    swap.after(index)
        return hidden
