from collections import Counter

import torch

from binsort.data.sampler import ClassBalancedSampler, ShardSampler, ShuffleSampler


def test_class_balanced_sampler_draws_classes_uniformly():
    labels = [0] * 900 + [1] * 90 + [2] * 10
    sampler = ClassBalancedSampler(labels, seed=0)
    counts = Counter(labels[i] for i in sampler)
    assert len(sampler) == len(labels)
    for cls in range(3):
        assert abs(counts[cls] / len(labels) - 1 / 3) < 0.05


def test_samplers_are_seeded_and_change_with_epoch():
    labels = [0, 0, 0, 1, 1, 2] * 10
    a, b = ClassBalancedSampler(labels, seed=5), ClassBalancedSampler(labels, seed=5)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    s1, s2 = ShuffleSampler(50, seed=5), ShuffleSampler(50, seed=5)
    assert list(s1) == list(s2)
    assert sorted(s1) == list(range(50))
    s1.set_epoch(3)
    assert list(s1) != list(s2)


def test_ranks_take_disjoint_equal_shares_of_one_order():
    n, world = 53, 4
    shards = [list(ShuffleSampler(n, seed=1, num_replicas=world, rank=r)) for r in range(world)]
    assert len({len(s) for s in shards}) == 1  # equal lengths keep DDP in step
    # The ranks' shares, interleaved, are one epoch's order: the n indices once each, then
    # the few that wrap around to pad the last share (56 = 4 x 14 draws for 53 images).
    whole = list(ShuffleSampler(n, seed=1))
    joined = [shard[i] for i in range(len(shards[0])) for shard in shards]
    assert joined[:n] == whole and sorted(joined[:n]) == list(range(n))
    assert joined[n:] == whole[: len(joined) - n]
    labels = [0] * 40 + [1] * 13
    balanced = [ClassBalancedSampler(labels, seed=1, num_replicas=2, rank=r) for r in range(2)]
    assert len(balanced[0]) == len(balanced[1]) == 27
    draws = [i for pair in zip(*map(list, balanced), strict=True) for i in pair]
    assert draws == list(
        ClassBalancedSampler(labels, seed=1, num_replicas=2, rank=0).global_order()
    )


def test_shard_sampler_covers_each_index_exactly_once():
    parts = [list(ShardSampler(10, num_replicas=3, rank=r)) for r in range(3)]
    assert sorted(sum(parts, [])) == list(range(10))


def test_generator_is_explicit_not_global():
    sampler = ShuffleSampler(20, seed=9)
    first = list(sampler)
    torch.manual_seed(123)  # global RNG must not matter
    assert list(sampler) == first
