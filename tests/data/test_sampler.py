import pytest

from apo.data import ResumableSampler


def batches(sampler, count):
    return [sampler.next_batch() for _ in range(count)]


def test_same_seed_same_order_and_different_seed_different_order():
    assert batches(ResumableSampler(20, 4, seed=1), 10) == batches(
        ResumableSampler(20, 4, seed=1), 10
    )
    assert batches(ResumableSampler(20, 4, seed=1), 5) != batches(
        ResumableSampler(20, 4, seed=2), 5
    )


def test_each_epoch_visits_every_example_once_in_a_new_order():
    sampler = ResumableSampler(12, 4, seed=0)
    first = [i for batch in batches(sampler, 3) for i in batch]
    second = [i for batch in batches(sampler, 3) for i in batch]
    assert sorted(first) == sorted(second) == list(range(12))
    assert first != second
    assert sampler.epoch == 1


def test_the_incomplete_last_batch_is_dropped():
    sampler = ResumableSampler(10, 4, seed=0)
    assert sampler.batches_per_epoch == 2
    epoch = batches(sampler, 2)
    assert all(len(b) == 4 for b in [*epoch, sampler.next_batch()])
    assert sampler.epoch == 1


def test_without_shuffling_the_order_is_the_file_order():
    assert batches(ResumableSampler(6, 3, shuffle=False), 2) == [[0, 1, 2], [3, 4, 5]]


def test_restored_state_continues_exactly():
    uninterrupted = ResumableSampler(10, 3, seed=7)
    expected = batches(uninterrupted, 9)  # crosses two epoch boundaries

    first = ResumableSampler(10, 3, seed=7)
    head = batches(first, 4)
    state = first.state_dict()
    resumed = ResumableSampler(10, 3, seed=7)
    resumed.load_state_dict(state)
    assert head + batches(resumed, 5) == expected


def test_state_from_other_data_is_refused():
    state = ResumableSampler(10, 3, seed=7).state_dict()
    with pytest.raises(ValueError, match="saved num_examples=10, now 11"):
        ResumableSampler(11, 3, seed=7).load_state_dict(state)


def test_too_small_dataset_is_a_clear_error():
    with pytest.raises(ValueError, match="3 usable examples, fewer than one batch of 4"):
        ResumableSampler(3, 4)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        ResumableSampler(3, 0)
