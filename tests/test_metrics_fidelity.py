"""KID, improved precision/recall and density/coverage agree with the reference packages (torch-fidelity's
``kernel_mmd`` / ``kid_features_to_metric`` and ``prdc.compute_prdc``) on the same features, to 1e-6."""

from __future__ import annotations

import numpy as np
import pytest

from facebench.metrics import MetricInputError, density_coverage, kid, mmd2_unbiased, precision_recall

torch = pytest.importorskip("torch")
metric_kid = pytest.importorskip("torch_fidelity.metric_kid")
prdc = pytest.importorskip("prdc")


def _sets(seed=0, n_real=300, n_fake=260, dim=24, shift=0.3):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n_real, dim)), rng.standard_normal((n_fake, dim)) * 1.1 + shift


def test_mmd_of_one_subset_equals_torch_fidelity():
    real, fake = _sets()
    x, y = real[:200], fake[:200]
    reference = metric_kid.kernel_mmd(x, y, kid_kernel="poly", kid_kernel_poly_degree=3, kid_kernel_poly_gamma=None,
                                      kid_kernel_poly_coef0=1)
    assert mmd2_unbiased(x, y) == pytest.approx(float(reference), abs=1e-9)


@pytest.mark.parametrize(("subsets", "subset_size", "seed"), [(7, 120, 0), (3, 250, 5)])
def test_kid_equals_torch_fidelity(subsets, subset_size, seed):
    # The same seed draws the same subsets as torch-fidelity; 250 of 250 is every sample (std 0).
    real, fake = _sets(n_real=250, n_fake=260)
    ref = metric_kid.kid_features_to_metric(torch.from_numpy(real), torch.from_numpy(fake), kid_subsets=subsets,
                                            kid_subset_size=subset_size, kid_kernel="poly", kid_kernel_poly_degree=3,
                                            kid_kernel_poly_gamma=None, kid_kernel_poly_coef0=1, rng_seed=seed,
                                            verbose=False)
    mean, std = kid(real, fake, subsets=subsets, subset_size=subset_size, seed=seed)
    assert mean == pytest.approx(ref[metric_kid.KEY_METRIC_KID_MEAN], abs=1e-6)
    assert std == pytest.approx(ref[metric_kid.KEY_METRIC_KID_STD], abs=1e-6)
    assert mean > 0.01 and (std > 1e-4 if subset_size < 250 else True)  # a real difference, subsets that differ


def test_kid_subsets_are_seeded_and_average_the_subset_mmds():
    real, fake = _sets()
    mean, std = kid(real, fake, subsets=5, subset_size=100, seed=7)
    rng = np.random.RandomState(7)
    values = []
    for _ in range(5):
        a = real[rng.choice(len(real), 100, replace=False)]
        b = fake[rng.choice(len(fake), 100, replace=False)]
        values.append(mmd2_unbiased(a, b))
    assert (mean, std) == pytest.approx((np.mean(values), np.std(values)), abs=1e-12)
    assert kid(real, fake, subsets=5, subset_size=100, seed=7) == (mean, std)
    same_mean, _ = kid(real, real[::-1], subsets=5, subset_size=100, seed=1)
    assert abs(same_mean) < mean  # one distribution against itself scores near zero


@pytest.mark.parametrize("seed", [0, 1])
def test_precision_recall_density_coverage_equal_prdc(seed):
    real, fake = _sets(seed=seed)
    pr3 = prdc.compute_prdc(real, fake, nearest_k=3)
    dc5 = prdc.compute_prdc(real, fake, nearest_k=5)
    precision, recall = precision_recall(real, fake, k=3)
    density, coverage = density_coverage(real, fake, k=5)
    assert precision == pytest.approx(pr3["precision"], abs=1e-6)
    assert recall == pytest.approx(pr3["recall"], abs=1e-6)
    assert density == pytest.approx(dc5["density"], abs=1e-6)
    assert coverage == pytest.approx(dc5["coverage"], abs=1e-6)
    assert 0 < precision < 1 and 0 < coverage < 1  # the sets overlap partly: the comparison is not trivial


def test_bad_sizes_are_refused():
    real, fake = _sets()
    with pytest.raises(MetricInputError, match="subset_size"):
        kid(real, fake, subset_size=10_000)
    with pytest.raises(MetricInputError, match="dimensions"):
        precision_recall(real, fake[:, :5])
    with pytest.raises(MetricInputError, match="k must lie"):
        density_coverage(real[:4], fake, k=5)
