from binsort.data.sampler import ShuffleSampler
from binsort.seeding import mix


def test_nearby_seeds_do_not_share_shifted_shuffles():
    """With seed + epoch, seed 42 at epoch 1 drew what seed 43 drew at epoch 0."""
    a, b = ShuffleSampler(50, seed=42), ShuffleSampler(50, seed=43)
    a.set_epoch(1)
    assert list(a) != list(b)
    assert mix(42, 1) != mix(43, 0) and mix(42, 1) == mix(42, 1)
    assert 0 <= mix(2**70, 3) < 2**63
