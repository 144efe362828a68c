import signal

import pytest
import torch

from apo.training.stopping import GracefulStop, StopTraining


def no_processes(flag: torch.Tensor) -> torch.Tensor:
    return flag


def test_a_first_signal_is_noted_for_the_end_of_the_step():
    stop = GracefulStop(announce=False)
    assert not stop.requested(no_processes)
    stop.on_signal(signal.SIGTERM, None)
    assert stop.requested(no_processes)
    assert stop.stop().code == 143 and stop.stop().saved


def test_a_second_signal_stops_at_once_without_a_checkpoint():
    stop = GracefulStop(announce=False)
    stop.on_signal(signal.SIGINT, None)
    with pytest.raises(StopTraining) as raised:
        stop.on_signal(signal.SIGINT, None)
    assert raised.value.code == 130 and not raised.value.saved


def test_a_signal_on_another_process_stops_this_one_too():
    stop = GracefulStop(announce=False)
    assert stop.requested(lambda flag: torch.maximum(flag, torch.tensor(15.0)))
    assert stop.stop().code == 143


def test_handlers_answer_in_the_block_and_are_given_back_after_closing():
    stop = GracefulStop(announce=False)
    before = signal.getsignal(signal.SIGTERM)
    seen_while_closing = []
    with stop.handling_signals(
        close=lambda: seen_while_closing.append(signal.getsignal(signal.SIGTERM))
    ):
        assert signal.getsignal(signal.SIGTERM) == stop.on_signal
    assert seen_while_closing == [signal.SIG_IGN]
    assert signal.getsignal(signal.SIGTERM) == before
