"""The networks DCFace samples with, in the release's module layout (its checkpoint keys load unchanged).

* :class:`UNet`: the guided-diffusion UNet (Dhariwal & Nichol's ADM, as P2-weighting's FFHQ model and
  ILVR use it) that both stages share. DCFace's changes (``src/models/unet.py``): every attention block
  also attends to a condition sequence (the condition's keys and values, per head, are put before the
  image's own), the identity feature is added to the timestep embedding (``stylemod``), the output keeps
  only the first 3 of its 6 channels (the noise; the learned variance is unused by DDIM), and level 4 does
  not downsample (112 px: 112 -> 56 -> 28 -> 14 -> 7, then 7 again). The first stage is the same network
  without a condition, at 256 px, downsampling at every level.
* :class:`IRBackbone`: AdaFace's IR-50 / IR-101 (``tface_model.Backbone``, mode ``ir``). DCFace uses one
  frozen copy as the style encoder (the output of block 2: 56 x 56 x 64) and one trained copy inside the
  identity embedder (block 21: 7 x 7 x 512, plus the final feature).
* :class:`IdentityEmbedder` (the release's ``label_mapping``, ``ImageEmbedder``): the identity image ->
  the identity feature (scaled, for ``stylemod``) and 49 spatial tokens.
* :class:`StyleMapping` (``external_mapping``, ``ExternalMappingV4Dropout``): the style image's early
  features -> patch statistics (global mean and "variance" and those of s x s patches, weighted per
  channel), positional embedding, LayerNorm: 1 + s^2 tokens; and ``cross_attn_adapter`` (Conv1d) that
  turns identity tokens + style tokens into the attention keys/values.

Sizes are parameters (:class:`UNetConfig`, :class:`IRConfig`) so the tiny configuration runs the same
code; the released values are in :mod:`.layout`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

# ------------------------------------------------------------------------------------------------ UNet


@dataclass(frozen=True)
class UNetConfig:
    """The guided-diffusion UNet's options (``create_model``'s, with ``attention_ds`` already as
    downsampling rates) plus DCFace's condition."""

    model_channels: int = 128
    channel_mult: tuple[int, ...] = (1, 1, 2, 2, 4, 4)
    num_res_blocks: int = 1
    attention_ds: tuple[int, ...] = (16,)
    num_heads: int = 4
    num_head_channels: int = 64
    num_heads_upsample: int = -1
    use_scale_shift_norm: bool = True
    resblock_updown: bool = True
    out_channels: int = 6
    in_channels: int = 3
    skip_downsample_level: int | None = 4  # DCFace: level 4 keeps its size; the first stage: None
    conditioned: bool = True  # DCFace's cross-attention + stylemod; the first stage: False


def _norm(channels: int) -> nn.GroupNorm:
    return GroupNorm32(32, channels)


class GroupNorm32(nn.GroupNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).type(x.dtype)


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: int = 10000) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(0, half, dtype=torch.float32) / half)
    args = timesteps[:, None].float() * freqs.to(timesteps.device)[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
    return embedding


class Resample(nn.Module):
    """Nearest 2x upsampling or 2x2 average pooling (no convolution: only inside resblocks here)."""

    def __init__(self, up: bool):
        super().__init__()
        self.up = up
        self.op = None if up else nn.AvgPool2d(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode="nearest") if self.up else self.op(x)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class ResBlock(nn.Module):
    def __init__(self, channels: int, emb_channels: int, out_channels: int | None = None, *,
                 scale_shift: bool = True, up: bool = False, down: bool = False):
        super().__init__()
        out_channels = out_channels or channels
        self.scale_shift = scale_shift
        self.in_layers = nn.Sequential(_norm(channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1))
        self.updown = up or down
        if self.updown:
            self.h_upd, self.x_upd = Resample(up), Resample(up)
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels if scale_shift
                                                             else out_channels))
        self.out_layers = nn.Sequential(_norm(out_channels), nn.SiLU(), nn.Dropout(0.0),
                                        nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip_connection = (nn.Identity() if out_channels == channels
                                else nn.Conv2d(channels, out_channels, 1))

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if self.updown:
            h = self.in_layers[:-1](x)
            h, x = self.h_upd(h), self.x_upd(x)
            h = self.in_layers[-1](h)
        else:
            h = self.in_layers(x)
        emb_out = self.emb_layers(emb).type(h.dtype)[..., None, None]
        if self.scale_shift:
            scale, shift = torch.chunk(emb_out, 2, dim=1)
            h = self.out_layers[0](h) * (1 + scale) + shift
            h = self.out_layers[1:](h)
        else:
            h = self.out_layers(h + emb_out)
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    """Self-attention over the feature map (heads split before q/k/v, guided-diffusion's legacy order);
    with a condition (B, 2C, S) its per-head keys and values come first in the sequence attended to."""

    def __init__(self, channels: int, num_heads: int, num_head_channels: int):
        super().__init__()
        self.num_heads = num_heads if num_head_channels == -1 else channels // num_head_channels
        if num_head_channels != -1 and channels % num_head_channels:
            raise ValueError(f"{channels} attention channels are not divisible by {num_head_channels} per head")
        self.norm = _norm(channels)
        self.qkv = nn.Conv1d(channels, channels * 3, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        b, c, *spatial = x.shape
        x = x.reshape(b, c, -1)
        qkv = self.qkv(self.norm(x))
        bs, width, length = qkv.shape
        heads = self.num_heads
        ch = width // (3 * heads)
        q, k, v = qkv.reshape(bs * heads, ch * 3, length).split(ch, dim=1)
        if cond is not None:
            ek, ev = cond.reshape(bs * heads, ch * 2, -1).split(ch, dim=1)
            k, v = torch.cat([ek, k], dim=-1), torch.cat([ev, v], dim=-1)
        scale = 1 / math.sqrt(math.sqrt(ch))
        weight = torch.einsum("bct,bcs->bts", q * scale, k * scale)
        weight = torch.softmax(weight.float(), dim=-1).type(weight.dtype)
        h = torch.einsum("bts,bcs->bct", weight, v).reshape(bs, -1, length)
        return (x + self.proj_out(h)).reshape(b, c, *spatial)


class Stage(nn.Sequential):
    """``TimestepEmbedSequential``: resblocks get the embedding, attention blocks the condition."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self:
            if isinstance(layer, ResBlock):
                x = layer(x, emb)
            elif isinstance(layer, AttentionBlock):
                x = layer(x, cond)
            else:
                x = layer(x)
        return x


class UNet(nn.Module):
    """Noise (and, unused, variance) prediction at timestep ``t``; DCFace's is conditioned by
    ``cond`` (attention keys/values, (B, 2 x attention channels, S)) and ``stylemod`` (B, 4 x channels)."""

    def __init__(self, config: UNetConfig):
        super().__init__()
        cfg = self.config = config
        mc = cfg.model_channels
        emb_dim = mc * 4
        heads_up = cfg.num_heads if cfg.num_heads_upsample == -1 else cfg.num_heads_upsample
        self.time_embed = nn.Sequential(nn.Linear(mc, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        ch = int(cfg.channel_mult[0] * mc)
        self.input_blocks = nn.ModuleList([Stage(nn.Conv2d(cfg.in_channels, ch, 3, padding=1))])
        chans, ds = [ch], 1
        rb = {"scale_shift": cfg.use_scale_shift_norm}
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                layers: list[nn.Module] = [ResBlock(ch, emb_dim, int(mult * mc), **rb)]
                ch = int(mult * mc)
                if ds in cfg.attention_ds:
                    layers.append(AttentionBlock(ch, cfg.num_heads, cfg.num_head_channels))
                self.input_blocks.append(Stage(*layers))
                chans.append(ch)
            if level != len(cfg.channel_mult) - 1:
                down = level != cfg.skip_downsample_level
                self.input_blocks.append(Stage(ResBlock(ch, emb_dim, ch, down=down, **rb) if cfg.resblock_updown
                                               else Downsample(ch)))
                chans.append(ch)
                ds *= 2
        self.middle_block = Stage(ResBlock(ch, emb_dim, **rb), AttentionBlock(ch, cfg.num_heads, cfg.num_head_channels),
                                  ResBlock(ch, emb_dim, **rb))
        self.output_blocks = nn.ModuleList()
        skip_up = None if cfg.skip_downsample_level is None else cfg.skip_downsample_level + 1
        for level, mult in list(enumerate(cfg.channel_mult))[::-1]:
            for i in range(cfg.num_res_blocks + 1):
                layers = [ResBlock(ch + chans.pop(), emb_dim, int(mc * mult), **rb)]
                ch = int(mc * mult)
                if ds in cfg.attention_ds:
                    layers.append(AttentionBlock(ch, heads_up, cfg.num_head_channels))
                if level and i == cfg.num_res_blocks:
                    layers.append(ResBlock(ch, emb_dim, ch, up=level != skip_up, **rb) if cfg.resblock_updown
                                  else Upsample(ch))
                    ds //= 2
                self.output_blocks.append(Stage(*layers))
        first = int(cfg.channel_mult[0] * mc)
        self.out = nn.Sequential(_norm(ch), nn.SiLU(), nn.Conv2d(first, cfg.out_channels, 3, padding=1))

    @property
    def attention_channels(self) -> set[int]:
        return {m.qkv.in_channels for m in self.modules() if isinstance(m, AttentionBlock)}

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, cond: torch.Tensor | None = None,
                stylemod: torch.Tensor | None = None) -> torch.Tensor:
        """The full output (B, out_channels, H, W); ``timesteps`` (B,) or (1,) (broadcast, as the release
        embeds one DDIM timestep for the whole batch)."""
        emb = self.time_embed(timestep_embedding(timesteps, self.config.model_channels))
        if self.config.conditioned:
            emb = emb + stylemod
        hs = []
        h = x
        for module in self.input_blocks:
            h = module(h, emb, cond)
            hs.append(h)
        h = self.middle_block(h, emb, cond)
        for module in self.output_blocks:
            h = module(torch.cat([h, hs.pop()], dim=1), emb, cond)
        return self.out(h)


# ------------------------------------------------------------------------------------------ IR backbone


@dataclass(frozen=True)
class IRConfig:
    """AdaFace's IR: units per stage, stage widths, the input side (112 -> a 7 x 7 final map)."""

    units: tuple[int, ...] = (3, 4, 14, 3)  # IR-50; IR-101: (3, 13, 30, 3)
    widths: tuple[int, ...] = (64, 128, 256, 512)
    stem: int = 64
    feature_dim: int = 512
    input_size: int = 112

    @property
    def final_side(self) -> int:
        side = self.input_size
        for _ in self.units:
            side = (side - 1) // 2 + 1  # 3x3, stride 2, padding 1
        return side

    def block_shape(self, index: int) -> tuple[int, int]:
        """(channels, side) of body block ``index``'s output."""
        side, seen = self.input_size, 0
        for width, n in zip(self.widths, self.units):
            side = (side - 1) // 2 + 1
            if index < seen + n:
                return width, side
            seen += n
        raise ValueError(f"block {index} is beyond the {seen} blocks of this IR")


IR_UNITS = {"ir_50": (3, 4, 14, 3), "ir_101": (3, 13, 30, 3)}


class BasicBlockIR(nn.Module):
    def __init__(self, in_channel: int, depth: int, stride: int):
        super().__init__()
        if in_channel == depth:
            self.shortcut_layer: nn.Module = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(in_channel, depth, 1, stride, bias=False),
                                                nn.BatchNorm2d(depth))
        self.res_layer = nn.Sequential(nn.BatchNorm2d(in_channel), nn.Conv2d(in_channel, depth, 3, 1, 1, bias=False),
                                       nn.BatchNorm2d(depth), nn.PReLU(depth),
                                       nn.Conv2d(depth, depth, 3, stride, 1, bias=False), nn.BatchNorm2d(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class IRBackbone(nn.Module):
    """``tface_model.Backbone(mode='ir')``. ``blocks``: build only the first ``blocks`` body blocks and no
    output layer (the style encoder needs block 2's output only; the same keys, fewer of them)."""

    def __init__(self, config: IRConfig, blocks: int | None = None):
        super().__init__()
        self.config = config
        self.input_layer = nn.Sequential(nn.Conv2d(3, config.stem, 3, 1, 1, bias=False), nn.BatchNorm2d(config.stem),
                                         nn.PReLU(config.stem))
        modules, ch = [], config.stem
        for width, n in zip(config.widths, config.units):
            for i in range(n):
                modules.append(BasicBlockIR(ch, width, 2 if i == 0 else 1))
                ch = width
        self.full = blocks is None
        self.body = nn.Sequential(*modules[:blocks])
        if self.full:
            side = config.final_side
            self.output_layer = nn.Sequential(nn.BatchNorm2d(ch), nn.Dropout(0.4), nn.Flatten(),
                                              nn.Linear(ch * side * side, config.feature_dim),
                                              nn.BatchNorm1d(config.feature_dim, affine=False))

    def forward(self, x: torch.Tensor, spatial: int) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(feature as the release returns it: ``output * norm``, or None without an output layer; the
        output of body block ``spatial``). ``x``: RGB in [-1, 1] (flipped to BGR here, as the release's
        ``RecognitionModel.forward`` does)."""
        x = self.input_layer(torch.flip(x, dims=[1]))
        kept = None
        for index, module in enumerate(self.body):
            x = module(x)
            if index == spatial:
                kept = x
                if not self.full:
                    return None, kept
        if kept is None:
            raise ValueError(f"block {spatial} is beyond the {len(self.body)} blocks built")
        x = self.output_layer(x)
        norm = torch.clip(torch.norm(x, 2, 1, True), 1e-5)
        return torch.div(x, norm) * norm, kept


def positional_encoding(d_model: int, length: int) -> torch.Tensor:
    """The release's sinusoidal table (used only to size the positional parameters: the checkpoint has them)."""
    pe = torch.zeros(length, d_model)
    position = torch.arange(0, length).unsqueeze(1)
    div = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float) * -(math.log(10000.0) / d_model))
    pe[:, 0::2] = torch.sin(position.float() * div)
    pe[:, 1::2] = torch.cos(position.float() * div)
    return pe


class RecognitionWrapper(nn.Module):
    """The release's ``RecognitionModel``: only its ``backbone`` holds weights (keys ``backbone.*``)."""

    def __init__(self, config: IRConfig, blocks: int | None = None):
        super().__init__()
        self.backbone = IRBackbone(config, blocks)


class IdentityEmbedder(nn.Module):
    """``label_mapping``: identity image -> (identity feature x scaler, the spatial tokens)."""

    def __init__(self, config: IRConfig, block: int):
        super().__init__()
        self.block = block
        self.backbone = RecognitionWrapper(config)
        width, side = config.block_shape(block)
        if width != config.feature_dim:
            raise ValueError(f"identity block {block} has {width} channels, the feature {config.feature_dim}")
        self.pos_emb = nn.ParameterList([nn.Parameter(positional_encoding(width, side * side + 1) - 0.5)])
        self.scaler = nn.ParameterList([nn.Parameter(torch.ones(1) * 0.001)])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feature, spatial = self.backbone.backbone(x, self.block)
        spatial = spatial.reshape(spatial.shape[0], spatial.shape[1], -1)
        out = torch.cat([feature.unsqueeze(2), spatial], dim=2).transpose(1, 2) + self.pos_emb[0][None]
        return out[:, 0, :] * self.scaler[0], out[:, 1:, :]


class StyleMapping(nn.Module):
    """``external_mapping`` (``ExternalMappingV4Dropout`` with one feature map, dropout off at sampling)."""

    def __init__(self, in_channels: int, out_channel: int, spatial_dim: int, attention_channels: int):
        super().__init__()
        self.spatial_dim = spatial_dim
        self.conv_0 = nn.Conv2d(in_channels, out_channel, 1)
        self.norm_0 = nn.BatchNorm2d(out_channel)
        self.relu_0 = nn.PReLU()
        self.channel_weight_0 = nn.ParameterList([nn.Parameter(torch.full((out_channel, 2), 0.5))])
        self.pos_emb_0 = nn.ParameterList([nn.Parameter(positional_encoding(out_channel, spatial_dim ** 2 + 1) - 0.5)])
        self.ln_0 = nn.LayerNorm(out_channel)
        self.cross_attn_adapter = nn.Conv1d(out_channel, 2 * attention_channels, 1)

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        s = self.spatial_dim
        if feature.shape[-1] // s * s != feature.shape[-1]:
            side = feature.shape[-1] // s * s
            feature = F.interpolate(feature, size=(side, side))
        feature = self.norm_0(self.conv_0(self.relu_0(feature)))
        side = feature.shape[-1]
        patch = side // s
        b, c = feature.shape[:2]
        global_mean = F.avg_pool2d(feature, side, side).view(b, c, -1)
        global_var = global_mean - F.avg_pool2d(feature ** 2, side, side).view(b, c, -1)  # as released: mean - E[x^2]
        patch_mean = F.avg_pool2d(feature, patch, patch).view(b, c, -1)
        patch_var = patch_mean - F.avg_pool2d(feature ** 2, patch, patch).view(b, c, -1)
        weight = self.channel_weight_0[0][None, :, :, None]
        global_info = (torch.stack([global_mean, global_var], dim=2) * weight).sum(2)
        patch_info = (torch.stack([patch_mean, patch_var], dim=2) * weight).sum(2)
        info = torch.cat([global_info, patch_info], dim=2).transpose(1, 2) + self.pos_emb_0[0][None]
        return self.ln_0(info)


@dataclass(frozen=True)
class DCFaceConfig:
    """Everything that sizes the DCFace networks and its sampler (read from the checkpoint's
    hyper-parameters by :func:`.layout.config_from_hparams`)."""

    unet: UNetConfig = field(default_factory=UNetConfig)
    identity_ir: IRConfig = field(default_factory=IRConfig)  # label_mapping.recognition_config.backbone
    style_ir: IRConfig = field(default_factory=IRConfig)  # recognition.backbone
    eval_ir: IRConfig = field(default_factory=lambda: IRConfig(units=IR_UNITS["ir_101"]))  # unused at sampling
    identity_block: int = 21
    style_block: int = 2
    spatial_dim: int = 3
    style_channels: int = 512  # external_mapping.out_channel
    image_size: int = 112
    num_train_timesteps: int = 1000
    beta_start: float = 0.0001
    beta_end: float = 0.02
    use_ema: bool = True


class DCFace(nn.Module):
    """What sampling needs: the (EMA) UNet, the identity embedder and the style encoder + mapping."""

    def __init__(self, config: DCFaceConfig):
        super().__init__()
        self.config = config
        self.unet = UNet(config.unet)
        self.label_mapping = IdentityEmbedder(config.identity_ir, config.identity_block)
        self.style_encoder = RecognitionWrapper(config.style_ir, blocks=config.style_block + 1)
        style_width = config.style_ir.block_shape(config.style_block)[0]
        attn = self.unet.attention_channels
        if len(attn) != 1:
            raise ValueError(f"attention blocks of several widths {sorted(attn)}: the condition has one")
        self.external_mapping = StyleMapping(style_width, config.style_channels, config.spatial_dim, attn.pop())

    def condition(self, id_images: torch.Tensor, style_images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(cross-attention keys/values (B, 2C, S), stylemod (B, D)) from images in [-1, 1], as the
        release's ``make_condition`` for ``crossatt_and_stylemod`` / ``patchstat_spatial_and_image``."""
        id_feat, id_tokens = self.label_mapping(id_images)
        _, spatial = self.style_encoder.backbone(style_images, self.config.style_block)
        style_tokens = self.external_mapping(spatial)
        tokens = torch.cat([id_tokens, style_tokens], dim=1).transpose(1, 2)
        return self.external_mapping.cross_attn_adapter(tokens), id_feat

    def eps(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, stylemod: torch.Tensor) -> torch.Tensor:
        """The predicted noise (the first 3 output channels)."""
        return self.unet(x, t, cond, stylemod)[:, :3]
