"""facebench.training: schedules, exact-resume checkpoints, rank-split batches, seeded augmentation."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from facebench.data.tensors import to_model_input
from facebench.errors import ConfigError, DataError, MissingFileError
from facebench.fr.augment import AugmentedFaces, apply_augmentation
from facebench.runtime import select_device
from facebench.training import (
    GlobalBatchSampler,
    LRSchedule,
    MetricsLog,
    Position,
    RunningMeans,
    build_scheduler,
    load_training_checkpoint,
    restore_checkpoint,
    save_checkpoint,
)


def test_step_schedule_matches_paper_milestones():
    # 26 epochs, /10 at [12, 20, 24] (1-based epochs where the lower rate starts), 5 steps per epoch
    sched = LRSchedule.from_epochs("step", epochs=26, steps_per_epoch=5, milestones=[12, 20, 24])
    per_epoch = [sched(e * 5) for e in range(26)]
    expected = [1.0] * 11 + [0.1] * 8 + [0.01] * 4 + [0.001] * 3
    assert np.allclose(per_epoch, expected)
    # constant within an epoch
    assert sched(11 * 5 - 1) == 1.0 and math.isclose(sched(11 * 5), 0.1)


def test_cosine_and_warmup_schedule():
    sched = LRSchedule.from_epochs("cosine", epochs=10, steps_per_epoch=10, warmup_epochs=1, min_factor=0.0)
    assert sched(0) == pytest.approx(0.1)
    assert sched(9) == pytest.approx(1.0)
    assert sched(10) == pytest.approx(1.0)
    mid = 10 + 45
    assert sched(mid) == pytest.approx(0.5 * (1 + math.cos(math.pi * 45 / 90)))
    assert sched(99) == pytest.approx(0.5 * (1 + math.cos(math.pi * 89 / 90)))
    poly = LRSchedule(kind="poly", total_steps=100, power=2.0)
    assert poly(50) == pytest.approx(0.25)


def test_unknown_schedule_is_config_error():
    with pytest.raises(ConfigError, match="unknown lr schedule 'linearish'"):
        LRSchedule(kind="linearish")


def _train_steps(model, opt, sched, n):
    for _ in range(n):
        x = torch.randn(4, 3)
        loss = torch.nn.functional.dropout(model(x), 0.5).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return random.random(), float(np.random.rand())


def test_checkpoint_resume_continues_exactly(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    sched = build_scheduler(opt, LRSchedule(kind="step", total_steps=10, milestones=[4]))
    _train_steps(model, opt, sched, 3)
    ckpt = save_checkpoint(tmp_path / "ckpt.pt", position=Position(0, 3, 3), model=model, optimizer=opt,
                           scheduler=sched)
    tail_a = _train_steps(model, opt, sched, 4)
    final_a = model.weight.detach().clone()

    torch.manual_seed(123)  # a different process state before resuming
    model_b = torch.nn.Linear(3, 2)
    opt_b = torch.optim.SGD(model_b.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    sched_b = build_scheduler(opt_b, LRSchedule(kind="step", total_steps=10, milestones=[4]))
    data = load_training_checkpoint(ckpt)
    pos = restore_checkpoint(data, model=model_b, optimizer=opt_b, scheduler=sched_b)
    assert pos == Position(0, 3, 3)
    tail_b = _train_steps(model_b, opt_b, sched_b, 4)
    assert torch.equal(final_a, model_b.weight)
    assert tail_a == tail_b
    assert opt_b.param_groups[0]["lr"] == pytest.approx(0.01)


def test_checkpoint_errors_name_the_file(tmp_path):
    with pytest.raises(MissingFileError, match="nope.pt: training checkpoint not found"):
        load_training_checkpoint(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    torch.save({"weights": torch.zeros(1)}, bad)
    with pytest.raises(DataError, match="bad.pt: not a facebench training checkpoint"):
        load_training_checkpoint(bad)


def test_global_batches_split_over_ranks_and_resume():
    single = GlobalBatchSampler(50, 8, seed=3)
    assert single.steps_per_epoch == 6 and len(single) == 6
    single.set_epoch(2)
    batches = list(single)
    ranks = [GlobalBatchSampler(50, 8, rank=r, world_size=2, seed=3) for r in range(2)]
    for s in ranks:
        s.set_epoch(2)
    halves = [list(s) for s in ranks]
    for step in range(6):
        assert halves[0][step] + halves[1][step] == batches[step]
        assert all(e == 2 for e, _ in batches[step])
    # every index at most once per epoch, 48 of 50 used
    flat = [i for b in batches for _, i in b]
    assert len(set(flat)) == 48
    # resuming at step 4 yields exactly the tail
    single.set_epoch(2, start_step=4)
    assert list(single) == batches[4:] and len(single) == 2
    # another epoch, another order
    single.set_epoch(3)
    assert list(single)[0] != batches[0]
    with pytest.raises(ConfigError, match="not divisible by the 3 processes"):
        GlobalBatchSampler(50, 8, world_size=3)


def test_metrics_log_truncates_after_resume_point(tmp_path):
    log = MetricsLog(tmp_path / "metrics.jsonl")
    for s in range(1, 6):
        log.log(step=s, loss=1.0 / s)
    log.log(step=6, loss=float("nan"))
    log.truncate_after(3)
    rows = log.read()
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert MetricsLog(tmp_path / "other.jsonl", enabled=False).read() == []


def test_running_means_are_the_step_means_and_survive_a_checkpoint():
    values = [{"loss": torch.tensor(v), "norm": torch.tensor(2 * v)} for v in (0.5, 1.25, 3.0)]
    means = RunningMeans()
    for v in values[:2]:
        means.add(v)
    state = means.state_dict()  # plain floats: loads with weights_only
    resumed = RunningMeans()
    resumed.load_state_dict(state)
    for m in (means, resumed):
        m.add(values[2])
        assert m.means() == pytest.approx({"loss": (0.5 + 1.25 + 3.0) / 3, "norm": 2 * (0.5 + 1.25 + 3.0) / 3})
    means.reset()
    assert means.means() == {} and means.count == 0


def test_cuda_request_without_cuda_is_an_error():
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    assert select_device("auto").type == "cpu"
    with pytest.raises(ConfigError, match="CUDA is not available"):
        select_device("cuda")


class _Reader:
    def __init__(self, n=6, size=20):
        rng = np.random.default_rng(0)
        self.images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)

    def __len__(self):
        return len(self.images)

    def image(self, i):
        return self.images[i]

    def label(self, i):
        return i % 3


def test_augmentation_is_a_function_of_epoch_and_index():
    reader = _Reader()
    ds = AugmentedFaces(reader, input_size=16, flip=True, random_erasing=True, seed=7)

    def item(key):
        pixels, label, params = ds[key]
        assert pixels.dtype == torch.uint8  # workers send uint8; the device normalises
        return apply_augmentation(pixels[None], params[None])[0], label

    a, la = item((1, 2))
    b, lb = item((1, 2))
    assert torch.equal(a, b) and la == lb == 2
    assert a.shape == (3, 16, 16)
    resized = to_model_input(reader.image(2), 16)[0]
    plain = ((resized + 1) * 127.5).round().clamp(0, 255) / 127.5 - 1  # resized in the worker, sent as uint8
    # over many epochs both flips and erasures occur; each result is the plain or flipped image,
    # possibly with an erased (all-zero) rectangle; a uint8 pixel never maps to exactly 0.0
    flips = erased = 0
    for epoch in range(40):
        x, _ = item((epoch, 2))
        kept = (x != 0).any(dim=0)
        is_plain = torch.allclose(x[:, kept], plain[:, kept], atol=1e-6)
        is_flip = torch.allclose(x[:, kept], plain.flip(-1)[:, kept], atol=1e-6)
        assert is_plain or is_flip
        flips += int(is_flip and not is_plain)
        erased += int(bool((~kept).any()))
    assert 5 < flips < 35 and 5 < erased < 35
    # pixel range of the model input
    assert plain.min() >= -1 and plain.max() <= 1
    assert torch.allclose(to_model_input(np.full((1, 4, 4, 3), 255, np.uint8)), torch.ones(1, 3, 4, 4))
    # a batch augmented on the device equals the items one by one
    keys = [(3, i) for i in range(6)]
    pixels, _, params = (torch.stack([ds[k][j] for k in keys]) if j != 1 else None for j in range(3))
    batch = apply_augmentation(pixels, params)
    for n, key in enumerate(keys):
        assert torch.equal(batch[n], item(key)[0])
