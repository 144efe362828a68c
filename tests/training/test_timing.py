import time

from apo.training.timing import PhaseTimer


def test_a_phase_run_twice_adds_up():
    timer = PhaseTimer()
    for _ in range(2):
        with timer.phase("time/generation"):
            time.sleep(0.01)
    assert timer.times["time/generation"] >= 0.02


def test_phases_are_listed_in_the_order_they_first_ended():
    timer = PhaseTimer()
    with timer.phase("time/step"):
        with timer.phase("time/generation"):
            pass
        with timer.phase("time/update"):
            pass
    with timer.phase("time/generation"):
        pass
    assert list(timer.times) == ["time/generation", "time/update", "time/step"]
