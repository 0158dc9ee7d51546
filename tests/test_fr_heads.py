"""Margin heads: logit values and gradients checked against direct formulas."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import one_thread  # noqa: F401 (fixture)

from facebench.pluginmanager import registry

pytestmark = pytest.mark.usefixtures("one_thread")


def _setup(num_classes=5, dim=8, n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(n, dim, generator=g)
    labels = torch.randint(0, num_classes, (n,), generator=g)
    return emb, labels


def _cos(head, emb):
    return F.normalize(emb, dim=1) @ F.normalize(head.weight.detach(), dim=1).T


def test_arcface_value_and_straight_through_gradient():
    head = registry("head").create("arcface", 8, 5)
    assert (head.scale, head.margin, head.straight_through, head.guard) == (64.0, 0.5, True, False)
    emb, labels = _setup()
    cos = _cos(head, emb)
    theta = torch.arccos(cos.gather(1, labels[:, None]))
    expected = cos.clone()
    expected.scatter_(1, labels[:, None], torch.cos(theta + 0.5))
    logits = head.margin_logits(head.cosines(emb), labels)
    assert torch.allclose(logits, 64 * expected, atol=1e-4)
    # straight-through: dLoss/dcos = s * (softmax(logits) - onehot) / N
    c = head.cosines(emb).detach().requires_grad_(True)
    loss = F.cross_entropy(head.margin_logits(c, labels), labels)
    loss.backward()
    soft = torch.softmax(64 * expected, dim=1)
    direct = 64 * (soft - F.one_hot(labels, 5).float()) / len(labels)
    assert torch.allclose(c.grad, direct, atol=1e-5)


def test_classic_arcface_exact_gradient_and_guard():
    head = registry("head").create("arcface-classic", 8, 5)
    assert head.guard and not head.straight_through
    labels = torch.tensor([0, 1, 2])
    # targets at theta = 0.5 (margin applies), and theta = 2.9 > pi - 0.5 (guard applies)
    target = torch.tensor([math.cos(0.5), math.cos(2.9), math.cos(1.0)], dtype=torch.float64)
    cos = torch.full((3, 5), 0.1, dtype=torch.float64)
    cos[torch.arange(3), labels] = target
    c = cos.clone().requires_grad_(True)
    logits = head.margin_logits(c, labels)
    t = logits[torch.arange(3), labels] / 64
    assert t[0].item() == pytest.approx(math.cos(1.0), abs=1e-6)
    assert t[1].item() == pytest.approx(math.cos(2.9) - 0.5 * math.sin(0.5), abs=1e-6)
    assert t[2].item() == pytest.approx(math.cos(1.5), abs=1e-6)
    # exact gradient of cos(theta + m) with respect to cos(theta): cos m + sin m * cos / sin
    t[0].backward()
    x = math.cos(0.5)
    assert c.grad[0, 0].item() == pytest.approx(math.cos(0.5) + math.sin(0.5) * x / math.sqrt(1 - x * x), rel=1e-5)


def test_guard_and_straight_through_are_selectable_separately():
    head = registry("head").create("arcface", 8, 5, guard=True, straight_through=True, margin=0.3, scale=32.0)
    labels = torch.tensor([0])
    c = torch.tensor([[math.cos(3.0), 0.2, 0.1, 0.0, -0.1]], requires_grad=True)
    logits = head.margin_logits(c, labels)
    assert logits[0, 0].item() / 32 == pytest.approx(math.cos(3.0) - 0.3 * math.sin(0.3), abs=1e-5)
    logits[0, 0].backward()
    assert c.grad[0, 0].item() == pytest.approx(32.0)


@pytest.mark.parametrize("name,margin", [("cosface", 0.35), ("cosface-m0.4", 0.4)])
def test_cosface_margins(name, margin):
    head = registry("head").create(name, 8, 5)
    emb, labels = _setup(seed=1)
    cos = _cos(head, emb)
    expected = 64 * (cos - margin * F.one_hot(labels, 5))
    assert torch.allclose(head.margin_logits(head.cosines(emb), labels), expected, atol=1e-4)
    assert head(emb, labels).item() == pytest.approx(F.cross_entropy(expected, labels).item(), rel=1e-4)


def test_softmax_head_is_plain_cross_entropy():
    head = registry("head").create("softmax", 8, 5)
    emb, labels = _setup(seed=2)
    expected = F.cross_entropy(emb @ head.fc.weight.T + head.fc.bias, labels)
    assert head(emb, labels).item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("name", ["arcface", "arcface-classic", "cosface"])
def test_half_precision_embeddings_give_the_fp32_loss(name):
    head = registry("head").create(name, 64, 1000)
    g = torch.Generator().manual_seed(3)
    emb = torch.randn(32, 64, generator=g) * 30  # large magnitudes: fp16 logits at s=64 would overflow-risk
    labels = torch.randint(0, 1000, (32,), generator=g)
    full = head(emb, labels)
    half = head(emb.half(), labels)
    assert half.dtype == torch.float32 and torch.isfinite(half)
    assert half.item() == pytest.approx(full.item(), rel=2e-3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = head(emb, labels)
    assert mixed.dtype == torch.float32 and mixed.item() == pytest.approx(full.item(), rel=1e-5)


def test_training_with_arcface_separates_classes():
    torch.manual_seed(0)
    head = registry("head").create("arcface", 16, 4, scale=16.0, margin=0.3)
    centers = torch.randn(4, 16) * 3
    labels = torch.arange(4).repeat(16)
    emb = centers[labels] + torch.randn(64, 16)
    opt = torch.optim.SGD(head.parameters(), lr=1.0)
    first = None
    for _ in range(60):
        loss = head(emb, labels)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first
    assert (head.logits(emb).argmax(1) == labels).float().mean() > 0.95
