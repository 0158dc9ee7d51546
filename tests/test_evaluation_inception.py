"""The FID Inception extractor: torchvision-compatible layout, TF-style pooling, hash-checked weights."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from facebench_plugins.evaluators.inception import FidInceptionExtractor, _BlockA, _BlockE, fid_inception_v3
from torchvision.models import inception as tv

from facebench.errors import DataError


def test_layout_equals_torchvision_inception_with_1008_classes():
    ours = fid_inception_v3().state_dict()
    reference = tv.inception_v3(weights=None, num_classes=1008, aux_logits=False, init_weights=False).state_dict()
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in reference.items()}
    assert ours["fc.weight"].shape == (1008, 2048)


def test_pooling_excludes_padding_in_a_blocks_and_is_max_in_the_last_block():
    torch.manual_seed(0)
    x = torch.randn(1, 192, 9, 9)
    ours, theirs = _BlockA(192, pool_features=32).eval(), tv.InceptionA(192, pool_features=32).eval()
    theirs.load_state_dict(ours.state_dict())
    with torch.no_grad():
        a, b = ours(x), theirs(x)
    # Branches without pooling agree everywhere; the pool branch (last 32 channels) only inside the border.
    torch.testing.assert_close(a[:, :-32], b[:, :-32])
    torch.testing.assert_close(a[:, -32:, 1:-1, 1:-1], b[:, -32:, 1:-1, 1:-1])
    assert not torch.allclose(a[:, -32:, 0, 0], b[:, -32:, 0, 0])
    last = _BlockE(64, max_pool=True).eval()
    with torch.no_grad():
        expect = last.branch_pool(F.max_pool2d(x[:, :64], 3, stride=1, padding=1))
        torch.testing.assert_close(last(x[:, :64])[:, -192:], expect)


def test_other_weights_are_refused_by_hash(tmp_path):
    path = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(fid_inception_v3().state_dict(), path)
    with pytest.raises(DataError, match=r"not the standard FID Inception weights \(sha256 [0-9a-f]{8}\.\.\., "
                                        r"expected 6726825d\.\.\.\)"):
        FidInceptionExtractor(path)


def test_loads_a_state_dict_and_gives_2048_features(tmp_path):
    torch.manual_seed(1)
    path = tmp_path / "inception.pth"
    torch.save(fid_inception_v3().state_dict(), path)
    extractor = FidInceptionExtractor(path, check_hash=False)
    with torch.no_grad():
        feats = extractor.forward_tensor(torch.rand(1, 3, 75, 75) * 2 - 1)
    assert feats.shape == (1, 2048) and torch.isfinite(feats).all()
    torch.save({"fc.weight": torch.zeros(3)}, tmp_path / "bad.pth")
    with pytest.raises(DataError, match="does not fit the FID Inception-v3 layout"):
        FidInceptionExtractor(tmp_path / "bad.pth", check_hash=False)
