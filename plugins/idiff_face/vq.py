"""The first-stage decoder both releases decode latents with: the VQ autoencoder of LDM's FFHQ-256 model.

IDiff-Face's README says the decoder was cut out of LDM's ``ffhq256`` ``VQModelInterface`` and saved as
``first_stage_decoder_state_dict.pt`` (UIFace points to the same file): ``decoder.*`` (taming's
``Decoder``), ``quantize.embedding.weight`` (8192 codes of 3 dimensions) and ``post_quant_conv`` (3 -> 3,
1x1). Its ``first_stage_config.yaml``: ``embed_dim 3``, ``n_embed 8192``, ``ch 128``, ``ch_mult [1, 2, 4]``,
``num_res_blocks 2``, ``z_channels 3``, ``attn_resolutions []`` (attention only in the middle), so a
3 x 32 x 32 latent decodes to 3 x 128 x 128 (four times the side); no scale factor is applied to the
latent (the diffusion was trained on the encoder's output as it is).

The release's decoder quantises before decoding (``force_not_quantize`` False in ``sample.py``): every
latent position is replaced by its nearest code (squared distance written as
``|z|^2 + |e|^2 - 2 z.e``, the first code on ties) and passed on as ``z + (z_q - z)``, the
straight-through form, which is what the release feeds ``post_quant_conv``. Output in [-1, 1] before
clamping.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from facebench_plugins.vec2face.model import Upsample  # taming's upsampling step, the same in both decoders
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class DecoderConfig:
    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 4)
    num_res_blocks: int = 2
    z_channels: int = 3
    embed_dim: int = 3
    n_embed: int = 8192
    out_ch: int = 3
    attn_levels: tuple[int, ...] = ()  # levels (index into ch_mult) with attention after each block

    @property
    def factor(self) -> int:
        """How many times the image side exceeds the latent side."""
        return 2 ** (len(self.ch_mult) - 1)


#: LDM's FFHQ-256 first stage (``first_stage_config.yaml`` of both releases).
RELEASE = DecoderConfig()
#: facebench's tiny decoder (CPU tests): the same code at 32/64 channels; 8192 codes of 3 dimensions, as
#: the release's ``VQDecoderInterface`` hard-codes them.
TINY = DecoderConfig(ch=32, ch_mult=(1, 2, 2), num_res_blocks=1)


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=1e-6)


class ResnetBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.norm1 = _norm(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = _norm(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return (x if self.nin_shortcut is None else self.nin_shortcut(x)) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over positions with 1x1 convolutions."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = _norm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        b, c, hh, ww = x.shape
        q = self.q(h).reshape(b, c, hh * ww).transpose(1, 2)
        k = self.k(h).reshape(b, c, hh * ww)
        weights = torch.softmax(torch.bmm(q, k) * (int(c) ** -0.5), dim=2)
        out = torch.bmm(self.v(h).reshape(b, c, hh * ww), weights.transpose(1, 2)).reshape(b, c, hh, ww)
        return x + self.proj_out(out)


class Decoder(nn.Module):
    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        block_in = cfg.ch * cfg.ch_mult[-1]
        self.conv_in = nn.Conv2d(cfg.z_channels, block_in, 3, padding=1)
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(block_in, block_in)
        self.mid.attn_1 = AttnBlock(block_in)
        self.mid.block_2 = ResnetBlock(block_in, block_in)
        levels: list[nn.Module] = []
        for level in reversed(range(len(cfg.ch_mult))):
            stage = nn.Module()
            stage.block = nn.ModuleList()
            stage.attn = nn.ModuleList()
            block_out = cfg.ch * cfg.ch_mult[level]
            for _ in range(cfg.num_res_blocks + 1):
                stage.block.append(ResnetBlock(block_in, block_out))
                block_in = block_out
                if level in cfg.attn_levels:
                    stage.attn.append(AttnBlock(block_in))
            if level != 0:
                stage.upsample = Upsample(block_in)
            levels.insert(0, stage)
        self.up = nn.ModuleList(levels)
        self.norm_out = _norm(block_in)
        self.conv_out = nn.Conv2d(block_in, cfg.out_ch, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(self.conv_in(z))))
        for level in reversed(range(len(self.up))):
            stage = self.up[level]
            for i, block in enumerate(stage.block):
                h = block(h)
                if len(stage.attn):
                    h = stage.attn[i](h)
            if level != 0:
                h = stage.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Quantizer(nn.Module):
    def __init__(self, n_embed: int, dim: int):
        super().__init__()
        self.embedding = nn.Embedding(n_embed, dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Each position replaced by its nearest code, in the straight-through form ``z + (z_q - z)``."""
        zl = z.permute(0, 2, 3, 1).contiguous()
        flat = zl.reshape(-1, zl.shape[-1])
        codes = self.embedding.weight
        dist = (flat ** 2).sum(dim=1, keepdim=True) + (codes ** 2).sum(dim=1) - 2 * torch.einsum("bd,dn->bn", flat, codes.t())
        zq = self.embedding(dist.argmin(dim=1)).reshape(zl.shape)
        return (zl + (zq - zl)).permute(0, 3, 1, 2).contiguous()


class LatentDecoder(nn.Module):
    """``forward(latents)`` -> images in about [-1, 1]: quantise, ``post_quant_conv``, decode."""

    def __init__(self, cfg: DecoderConfig = RELEASE):
        super().__init__()
        self.cfg = cfg
        self.decoder = Decoder(cfg)
        self.quantize = Quantizer(cfg.n_embed, cfg.embed_dim)
        self.post_quant_conv = nn.Conv2d(cfg.embed_dim, cfg.z_channels, 1)

    def forward(self, latents: torch.Tensor, *, quantize: bool = True) -> torch.Tensor:
        z = self.quantize(latents) if quantize else latents
        return self.decoder(self.post_quant_conv(z))


__all__ = ["RELEASE", "TINY", "DecoderConfig", "LatentDecoder"]
