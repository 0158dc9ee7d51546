"""The Vec2Face feature masked autoencoder, laid out like the official release so its weights load unchanged.

A 512-d identity vector is projected to the model width, spread into a 7x7 grid of rows, partly masked
(masked rows are overwritten with the projected vector, the lowest-noise masked rows are dropped before
the encoder), encoded, decoded back to 49 rows and turned into an image by a convolutional decoder.
Each step is a method of its own (MAE style) so it can be tested alone. Module names and parameter
shapes follow ``vec2face_vit_base_patch16`` (see ``docs/vec2face.md``); ``center_token`` and
``patch_embed`` are unused in the forward pass but kept so the official state dict loads strictly.

Vec2Face+ is the same class with two options, as its release writes them: ``lora_rank`` wraps the
attention ``qkv`` and ``proj`` of every encoder and decoder block in a :class:`~.lora.LoRALinear`, and
``forward(..., cond=...)`` takes the pose model's row (:mod:`.pose_condition`) into the decoder (see
:meth:`Vec2Face.forward_decoder`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from facebench.errors import ConfigError

from .lora import LoRALinear


@dataclass
class MaskingConfig:
    """How many rows are masked: ratio r ~ truncated normal on [ratio_min, ratio_max], one r per batch.

    ``ceil(rows * ratio_min)`` rows are dropped before the encoder and ``ceil(rows * r)`` rows are masked.
    """

    ratio_min: float = 0.5
    ratio_max: float = 1.0
    mean: float = 0.75
    std: float = 0.25

    def __post_init__(self) -> None:
        if not 0.0 <= self.ratio_min <= self.ratio_max <= 1.0:
            raise ConfigError(f"masking needs 0 <= ratio_min <= ratio_max <= 1, got {self.ratio_min}, {self.ratio_max}")
        if self.std <= 0:
            raise ConfigError(f"masking std must be positive, got {self.std}")

    @classmethod
    def training(cls) -> MaskingConfig:
        """The paper's and the training script's settings."""
        return cls(0.5, 1.0, 0.75, 0.25)

    @classmethod
    def inference(cls) -> MaskingConfig:
        """The settings of the official inference scripts."""
        return cls(0.1, 1.0, 0.15, 0.25)

    @classmethod
    def pose_control(cls) -> MaskingConfig:
        """Vec2Face+'s ``pose_control.py``: most rows masked, so the pose row fills them."""
        return cls(0.8, 0.9, 0.85, 0.05)

    def draw_ratio(self, generator: torch.Generator | None = None) -> float:
        """One draw from the truncated normal, by inverting the normal CDF on the allowed interval."""
        lo = torch.special.ndtr(torch.tensor((self.ratio_min - self.mean) / self.std, dtype=torch.float64))
        hi = torch.special.ndtr(torch.tensor((self.ratio_max - self.mean) / self.std, dtype=torch.float64))
        u = torch.rand((), generator=generator, dtype=torch.float64)
        r = self.mean + self.std * torch.special.ndtri(lo + u * (hi - lo))
        return float(r.clamp(self.ratio_min, self.ratio_max))


@dataclass
class Vec2FaceConfig:
    """Widths and depths of one Vec2Face model; the defaults are the official base model."""

    feature_dim: int = 512
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    decoder_depth: int = 8
    decoder_num_heads: int = 16
    mlp_ratio: float = 4.0
    grid: int = 7
    z_channels: int = 256
    decoder_channels: int = 128
    channel_mult: list[int] = field(default_factory=lambda: [1, 1, 2, 2, 4])
    num_res_blocks: int = 2
    dropout: float = 0.1
    attn_dropout: float = 0.1
    #: Vec2Face+ adapters on every block's attention ``qkv`` and ``proj`` (0: none, plain Vec2Face); the
    #: release's ``--lora_r`` (8 for its pose model), ``--lora_alpha`` (32) and ``--lora_dropout`` (0).
    lora_rank: int = 0
    lora_alpha: float = 32.0
    lora_dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("embed_dim", "depth", "num_heads", "decoder_depth", "decoder_num_heads", "grid",
                     "z_channels", "decoder_channels", "num_res_blocks", "feature_dim"):
            if getattr(self, name) < 1:
                raise ConfigError(f"vec2face model '{name}' must be at least 1, got {getattr(self, name)}")
        if self.embed_dim % self.num_heads or self.embed_dim % self.decoder_num_heads:
            raise ConfigError(f"vec2face embed_dim {self.embed_dim} must divide by the head counts "
                              f"{self.num_heads} and {self.decoder_num_heads}")
        if not self.channel_mult:
            raise ConfigError("vec2face model 'channel_mult' must not be empty")
        if self.lora_rank < 0 or not 0.0 <= self.lora_dropout < 1.0:
            raise ConfigError(f"vec2face lora_rank must be >= 0 and lora_dropout in [0, 1), got {self.lora_rank}, "
                              f"{self.lora_dropout}")
        for mult in self.channel_mult:
            if (self.decoder_channels * mult) % 32:
                raise ConfigError(f"vec2face decoder widths must divide by 32 (GroupNorm groups); "
                                  f"decoder_channels {self.decoder_channels} x {mult} does not")

    @property
    def num_rows(self) -> int:
        return self.grid * self.grid

    @property
    def image_size(self) -> int:
        """Each level of the image decoder but the first doubles the grid (7 -> 112 with five levels)."""
        return self.grid * 2 ** (len(self.channel_mult) - 1)

    @property
    def patch_size(self) -> int:
        return self.image_size // self.grid

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Vec2FaceConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown vec2face model keys: {', '.join(unknown)}")
        values = dict(data)
        for f in fields(cls):  # a stored configuration is data: typed and bounded before a model is built
            if f.name in values:
                _check_size(f.name, values[f.name], f.default if f.name != "channel_mult" else [1])
        if "channel_mult" in values:
            values["channel_mult"] = [int(v) for v in values["channel_mult"]]
        return cls(**values)


#: The largest value a stored configuration may give a size (a depth of 10**14 would build blocks forever).
SIZE_LIMITS = {"depth": 256, "decoder_depth": 256, "num_res_blocks": 64, "grid": 64, "channel_mult": 64}
MAX_SIZE = 1 << 16


def _check_size(name: str, value: Any, default: Any) -> None:
    """``value`` of the type of ``default`` (an integer size up to its limit, a finite number, a list of at most
    8 integer sizes), else a ConfigError naming the key."""
    limit = SIZE_LIMITS.get(name, MAX_SIZE)
    if isinstance(default, list):
        if not (isinstance(value, list) and 1 <= len(value) <= 8):
            raise ConfigError(f"vec2face model '{name}' must be a list of 1 to 8 integers, got {type(value).__name__}")
        for item in value:
            _check_size(name, item, 1)
    elif isinstance(default, int):
        if type(value) is not int or not 0 <= value <= limit:
            shown = value if type(value) in (int, float) and abs(value) < 1e18 else type(value).__name__
            raise ConfigError(f"vec2face model '{name}' must be an integer from 0 to {limit}, got {shown}")
    elif isinstance(default, float):  # a dropout is a probability; a ratio or scale at most 64
        top = 1.0 if "dropout" in name else 64.0
        if type(value) not in (int, float) or not 0.0 <= value <= top or (top == 1.0 and value == 1.0):
            shown = value if type(value) in (int, float) else type(value).__name__
            raise ConfigError(f"vec2face model '{name}' must be a number from 0 to {top:g}"
                              f"{' (exclusive)' if top == 1.0 else ''}, got {shown}")


#: Named configurations: the official base model and a tiny one that trains on CPU in minutes (56 px).
#: Vec2Face+ uses the same two with ``lora_rank`` set for its pose model (see ``generator.py``).
CONFIGS: dict[str, Vec2FaceConfig] = {
    "vec2face_vit_base_patch16": Vec2FaceConfig(),
    "vec2face_tiny": Vec2FaceConfig(
        embed_dim=128, depth=2, num_heads=4, decoder_depth=2, decoder_num_heads=4, z_channels=32,
        decoder_channels=32, channel_mult=[1, 1, 1, 1], num_res_blocks=1,
    ),
}
#: Vec2Face+'s pose model: the release's ``pose_control.py --use_lora --lora_r 8`` (alpha 32, no dropout).
CONFIGS["vec2face_plus_pose"] = Vec2FaceConfig(**{**CONFIGS["vec2face_vit_base_patch16"].to_dict(), "lora_rank": 8})
CONFIGS["vec2face_plus_tiny_pose"] = Vec2FaceConfig(**{**CONFIGS["vec2face_tiny"].to_dict(), "lora_rank": 8})


def model_config(name: str) -> Vec2FaceConfig:
    if name not in CONFIGS:
        raise ConfigError(f"unknown vec2face model '{name}' (known: {', '.join(CONFIGS)})")
    return Vec2FaceConfig.from_dict(CONFIGS[name].to_dict())


def dropped_count(dropped: torch.Tensor) -> int:
    """Rows dropped per sample (every sample drops as many): what ``Vec2Face.forward`` takes as
    ``num_dropped``. Called on masks still on the CPU it costs no device sync."""
    return int(dropped[:1].sum()) if dropped.shape[0] else 0


# ----------------------------------------------------------------------------------------------- ViT parts

class Attention(nn.Module):
    """Multi-head self-attention with two interchangeable kernels.

    ``fused=False`` computes softmax attention explicitly in fp32 with the row maximum subtracted (as the
    release does); ``fused=True`` calls ``scaled_dot_product_attention``, which is the same function.
    ``lora``: (rank, alpha, dropout) wraps ``qkv`` and ``proj`` in adapters (Vec2Face+).
    """

    def __init__(self, dim: int, num_heads: int, attn_dropout: float = 0.0, proj_dropout: float = 0.0,
                 lora: tuple[int, float, float] | None = None):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.qkv: nn.Module = nn.Linear(dim, dim * 3, bias=True)
        if lora:
            self.qkv = LoRALinear(self.qkv, *lora)
        self.attn_drop = nn.Dropout(attn_dropout)
        self.proj: nn.Module = nn.Linear(dim, dim)
        if lora:
            self.proj = LoRALinear(self.proj, *lora)
        self.proj_drop = nn.Dropout(proj_dropout)
        self.fused = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        if self.fused:
            p = self.attn_drop.p if self.training else 0.0
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        else:
            with torch.autocast(device_type=x.device.type, enabled=False):
                scores = (q.float() @ k.float().transpose(-2, -1)) * self.scale
                scores = scores - scores.amax(dim=-1, keepdim=True)
                weights = self.attn_drop(scores.softmax(dim=-1))
                out = (weights @ v.float()).to(q.dtype)
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, n, c)))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class Block(nn.Module):
    """Pre-norm transformer block (``norm1``/``attn``/``norm2``/``mlp`` as in timm).

    As in the release, a block always runs in fp32: autocast is switched off inside it and its input is
    cast to float32, so under AMP only the projections, the image decoder and the losses run in half
    precision.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, dropout: float, attn_dropout: float,
                 lora: tuple[int, float, float] | None = None):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, attn_dropout, dropout, lora)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = x.float()
            x = x + self.attn(self.norm1(x))
            return x + self.mlp(self.norm2(x))


class RowEmbedding(nn.Module):
    """Learned position embedding + LayerNorm + dropout over the rows (``token_emb`` in the release)."""

    def __init__(self, num_positions: int, dim: int, dropout: float):
        super().__init__()
        self.position_embeddings = nn.Embedding(num_positions, dim)
        self.LayerNorm = nn.LayerNorm(dim, eps=1e-6)
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("position_ids", torch.arange(num_positions).unsqueeze(0))

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        positions = self.position_embeddings(self.position_ids[:, : rows.shape[1]])
        return self.dropout(self.LayerNorm(rows + positions))


class PatchEmbed(nn.Module):
    """Present in the official state dict but not used by the forward pass."""

    def __init__(self, patch_size: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)


# ------------------------------------------------------------------------------------------ image decoder

def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=1e-6, affine=True)


class ResBlock(nn.Module):
    """GroupNorm-swish-conv twice, bias-free convs; when the width changes the shortcut is a 1x1 conv
    applied to the block's *output* (so its weight is out x out), which is what the released weights expect."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.norm1 = _group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = _group_norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.nin_shortcut = (
            nn.Conv2d(out_channels, out_channels, 1, bias=False) if in_channels != out_channels else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return h + (self.nin_shortcut(h) if self.nin_shortcut is not None else x)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class DecoderLevel(nn.Module):
    def __init__(self, blocks: list[ResBlock], upsample: bool, channels: int):
        super().__init__()
        self.block = nn.ModuleList(blocks)
        if upsample:
            self.upsample = Upsample(channels)


class MidBlocks(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.block_1 = ResBlock(channels, channels)
        self.block_2 = ResBlock(channels, channels)


class ImageDecoder(nn.Module):
    """Convolutional decoder (z_channels x grid x grid -> 3 x image x image); the output is not squashed."""

    def __init__(self, z_channels: int, channels: int, channel_mult: list[int], num_res_blocks: int):
        super().__init__()
        widths = [channels * m for m in channel_mult]
        top = widths[-1]
        self.conv_in = nn.Conv2d(z_channels, top, 3, padding=1)
        self.mid = MidBlocks(top)
        levels: list[DecoderLevel] = []
        width = top
        for level in reversed(range(len(widths))):
            blocks = []
            for _ in range(num_res_blocks):
                blocks.append(ResBlock(width, widths[level]))
                width = widths[level]
            levels.insert(0, DecoderLevel(blocks, upsample=level > 0, channels=width))
        self.up = nn.ModuleList(levels)
        self.norm_out = _group_norm(width)
        self.conv_out = nn.Conv2d(width, 3, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid.block_2(self.mid.block_1(self.conv_in(z)))
        for level in reversed(self.up):
            for block in level.block:
                h = block(h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))

    @property
    def last_layer(self) -> torch.Tensor:
        """The weight the adaptive GAN weight is computed at."""
        return self.conv_out.weight


# ------------------------------------------------------------------------------------------------- model

class Vec2FaceOutput(NamedTuple):
    """``targets``: the projected vector and its rows before masking, (N, 1+rows, D), for the feature-map loss;
    ``rows``: decoder output rows (N, 1+rows, D); ``image``: (N, 3, S, S) unclipped; ``masked``: (N, rows)."""

    targets: torch.Tensor
    rows: torch.Tensor
    image: torch.Tensor
    dropped: torch.Tensor
    masked: torch.Tensor


class Vec2Face(nn.Module):
    def __init__(self, config: Vec2FaceConfig | None = None):
        super().__init__()
        self.config = cfg = config or Vec2FaceConfig()
        d, rows = cfg.embed_dim, cfg.num_rows
        self.latent_prior_proj_f = nn.Linear(cfg.feature_dim, d)
        self.feature_token = nn.Linear(1, rows)
        self.center_token = nn.Linear(d, rows)
        self.patch_embed = PatchEmbed(cfg.patch_size, d)
        self.token_emb = RowEmbedding(rows + 1, d, cfg.dropout)
        lora = (cfg.lora_rank, cfg.lora_alpha, cfg.lora_dropout) if cfg.lora_rank else None
        self.blocks = nn.ModuleList(
            Block(d, cfg.num_heads, cfg.mlp_ratio, cfg.dropout, cfg.attn_dropout, lora) for _ in range(cfg.depth)
        )
        self.norm = nn.LayerNorm(d, eps=1e-6)
        self.decoder_embed = nn.Linear(d, d)
        self.decoder_pos_embed_learned = nn.Parameter(torch.zeros(1, rows + 1, d))
        self.decoder_blocks = nn.ModuleList(
            Block(d, cfg.decoder_num_heads, cfg.mlp_ratio, cfg.dropout, cfg.attn_dropout, lora)
            for _ in range(cfg.decoder_depth)
        )
        self.decoder_norm = nn.LayerNorm(d, eps=1e-6)
        self.im_decoder_proj = nn.Linear(d, cfg.z_channels)
        self.im_decoder = ImageDecoder(cfg.z_channels, cfg.decoder_channels, cfg.channel_mult, cfg.num_res_blocks)
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.decoder_pos_embed_learned, std=0.02)
        nn.init.trunc_normal_(self.token_emb.position_embeddings.weight, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    # -- switches used by the fast path
    def set_fused_attention(self, fused: bool) -> None:
        for m in self.modules():
            if isinstance(m, Attention):
                m.fused = fused

    # -- the steps of the forward pass
    def embed_vector(self, vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, feature_dim) -> the projected vector f (N, D) and its rows (N, rows, D)."""
        f = self.latent_prior_proj_f(vectors)
        rows = self.feature_token(f.unsqueeze(-1)).transpose(1, 2)
        return f, rows

    def random_masking(self, n: int, settings: MaskingConfig,
                       generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(dropped, masked) boolean (n, rows) masks: the lowest-noise rows are masked, the lowest of those dropped."""
        rows = self.config.num_rows
        num_dropped = math.ceil(rows * settings.ratio_min)
        num_masked = max(num_dropped, math.ceil(rows * settings.draw_ratio(generator)))
        noise = torch.rand(n, rows, generator=generator)
        rank = noise.argsort(dim=1).argsort(dim=1)
        return rank < num_dropped, rank < num_masked

    def check_masks(self, dropped: torch.Tensor, masked: torch.Tensor, n: int, num_dropped: int | None = None) -> None:
        """User-given masks: right shape, dropped rows masked too, the same number dropped in every row.

        While ``torch.compile`` traces the model only the shapes are checked: the value checks would read
        the masks back to Python (a graph break each); the compiled caller checks them first (the
        generator does) and the trainer draws its masks with :meth:`random_masking`.
        """
        shape = (n, self.config.num_rows)
        for name, m in (("dropped", dropped), ("masked", masked)):
            if tuple(m.shape) != shape or m.dtype != torch.bool:
                raise ConfigError(f"{name} mask must be a bool tensor of shape {shape}, got "
                                  f"{m.dtype} {tuple(m.shape)}")
        if torch.compiler.is_compiling():
            return
        if bool((dropped & ~masked).any()):
            raise ConfigError("every dropped row must also be masked")
        counts = dropped.sum(dim=1)
        if n and bool((counts != counts[0]).any()):
            raise ConfigError("every sample must drop the same number of rows (the encoder needs equal lengths)")
        if num_dropped is not None and n and int(counts[0]) != num_dropped:
            raise ConfigError(f"num_dropped is {num_dropped} but the masks drop {int(counts[0])} rows")

    def forward_encoder(self, f: torch.Tensor, rows: torch.Tensor, dropped: torch.Tensor,
                        masked: torch.Tensor, num_dropped: int | None = None) -> torch.Tensor:
        """Masked rows become f, f is prepended as row 0, dropped rows are removed; (N, 1+kept, D).

        The kept rows are gathered in their order (a stable sort puts them first) and the first ``1 + kept``
        taken: with ``num_dropped`` given as a Python int every shape is known to ``torch.compile`` (no
        graph break); without it the count is read from the mask.
        """
        n, d = f.shape
        rows = torch.where(masked.unsqueeze(-1), f.unsqueeze(1).to(rows.dtype), rows)
        x = self.token_emb(torch.cat([f.unsqueeze(1).to(rows.dtype), rows], dim=1))
        if num_dropped is None:
            num_dropped = dropped_count(dropped)
        kept = self.config.num_rows - num_dropped
        dropped_first = torch.cat([torch.zeros(n, 1, dtype=torch.uint8, device=f.device), dropped.to(torch.uint8)], 1)
        order = dropped_first.argsort(dim=1, stable=True)[:, : 1 + kept]
        x = x.gather(1, order.unsqueeze(-1).expand(n, 1 + kept, d))
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward_decoder(self, encoded: torch.Tensor, dropped: torch.Tensor, masked: torch.Tensor,
                        cond: torch.Tensor | None = None) -> torch.Tensor:
        """Scatter the encoded rows back; dropped and masked positions take the encoded row 0; (N, 1+rows, D).

        Position j of the full sequence reads encoded row ``(number of kept positions up to j) - 1`` (a
        gather of fixed shape, which ``torch.compile`` traces without a break); dropped positions read a
        neighbour's row there, but every dropped row is masked and so replaced by row 0 right after.

        ``cond`` (N, 1, D), Vec2Face+'s pose row: as in the release, the masked and dropped positions take
        ``cond`` instead of row 0, and the encoded rows enter the decoder without ``decoder_embed`` (the
        release applies it only when no condition is given). Row 0 is never masked, so it stays the
        encoded vector row. A zero ``cond`` therefore does not reproduce plain Vec2Face: masked rows are
        zero, and ``decoder_embed`` is skipped.
        """
        n, _, d = encoded.shape
        if cond is None:
            x = self.decoder_embed(encoded)
            first = x[:, :1].expand(n, self.config.num_rows + 1, d)
        else:
            if tuple(cond.shape) != (n, 1, d):
                raise ConfigError(f"cond must have shape ({n}, 1, {d}), got {tuple(cond.shape)}")
            x = encoded
            first = cond.to(x.dtype).expand(n, self.config.num_rows + 1, d)
        pad = torch.zeros(n, 1, dtype=torch.bool, device=x.device)
        keep = torch.cat([~pad, ~dropped], dim=1)
        source = keep.long().cumsum(dim=1) - 1
        full = x.gather(1, source.unsqueeze(-1).expand(n, self.config.num_rows + 1, d))
        full = torch.where(torch.cat([pad, masked], dim=1).unsqueeze(-1), first, full)
        x = full + self.decoder_pos_embed_learned
        for block in self.decoder_blocks:
            x = block(x)
        return self.decoder_norm(x)

    def decode_image(self, rows: torch.Tensor) -> torch.Tensor:
        """Decoder rows 1.. -> grid x grid x z_channels -> image (not clipped)."""
        g = self.config.grid
        z = self.im_decoder_proj(rows[:, 1:])
        z = z.transpose(1, 2).reshape(rows.shape[0], -1, g, g)
        return self.im_decoder(z)

    def forward(self, vectors: torch.Tensor, dropped: torch.Tensor, masked: torch.Tensor,
                num_dropped: int | None = None, cond: torch.Tensor | None = None) -> Vec2FaceOutput:
        """``num_dropped`` (rows dropped per sample, e.g. :func:`dropped_count` of masks still on the CPU)
        spares reading it back from the device, and a graph break under ``torch.compile``. ``cond``: the
        pose row of Vec2Face+ (:meth:`forward_decoder`)."""
        self.check_masks(dropped, masked, vectors.shape[0], num_dropped)
        dropped, masked = dropped.to(vectors.device), masked.to(vectors.device)
        f, rows = self.embed_vector(vectors)
        targets = torch.cat([f.unsqueeze(1), rows], dim=1)
        encoded = self.forward_encoder(f, rows, dropped, masked, num_dropped)
        decoded = self.forward_decoder(encoded, dropped, masked, cond)
        return Vec2FaceOutput(targets, decoded, self.decode_image(decoded), dropped, masked)
