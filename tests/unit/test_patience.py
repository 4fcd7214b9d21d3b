"""A run's patience runs out only while nothing moves."""

from gradesync.services.patience import Patience


def test_nothing_moving_runs_out_after_the_patience() -> None:
    p = Patience(30.0, now=0.0)
    assert p.look(10.0, settled=0, open_rows=5)
    assert p.look(29.9, settled=0, open_rows=5)
    assert not p.look(30.0, settled=0, open_rows=5)
    assert p.left(30.0) == 0.0


def test_a_backlog_worked_through_keeps_the_run_waiting() -> None:
    # 10,000 rows at 250 per look every 10 s: far past 30 s, never out of patience
    p = Patience(30.0, now=0.0)
    open_rows = 10_000
    for step in range(1, 41):
        open_rows -= 250
        assert p.look(step * 10.0, settled=0, open_rows=open_rows)  # another worker's pass
    assert p.left(400.0) == 30.0


def test_rows_settled_by_this_pass_count_as_progress() -> None:
    p = Patience(30.0, now=0.0)
    assert p.look(25.0, settled=3, open_rows=7)
    assert p.look(54.0, settled=0, open_rows=7)  # 29 s after the progress
    assert not p.look(55.0, settled=0, open_rows=7)


def test_more_rows_open_is_not_progress() -> None:
    p = Patience(30.0, now=0.0)
    assert p.look(1.0, settled=0, open_rows=5)
    assert p.look(20.0, settled=0, open_rows=9)  # new work arrived: no reset
    assert not p.look(31.0, settled=0, open_rows=9)


def test_rows_under_another_workers_lease_are_waited_for_until_it_ends() -> None:
    p = Patience(30.0, now=0.0)
    p.hold_until(100.0)  # a stopped worker's lease on the rows ends at 100 s
    assert p.look(90.0, settled=0, open_rows=4)
    assert p.look(129.0, settled=0, open_rows=4)  # patience counts from the lease's end
    assert not p.look(131.0, settled=0, open_rows=4)
    p.hold_until(10.0)  # an earlier end never shortens the wait
    assert p.left(131.0) == 0.0


def test_rows_due_while_the_destination_takes_other_results_wait_their_turn() -> None:
    # a big remaster's rows behind live grades: nothing of the run's moves for minutes,
    # but the destination is working, so the run does not give up on them
    p = Patience(30.0, now=0.0)
    for step in range(1, 13):
        assert p.look(step * 10.0, settled=0, open_rows=500, waiting_turn=True)
    assert p.left(120.0) == 30.0
    assert p.look(149.0, settled=0, open_rows=500)  # the destination stopped taking any
    assert not p.look(151.0, settled=0, open_rows=500)


def test_the_time_between_sends_is_not_waiting_and_the_patience_left_is_kept() -> None:
    # a run sends, verifies for 100 s, then sends again: the 10 s it had left, no more
    p = Patience(30.0, now=0.0)
    assert p.look(20.0, settled=0, open_rows=2)
    p.stop(20.0)
    assert p.left(120.0) == 10.0
    p.resume(120.0)
    assert p.look(129.0, settled=0, open_rows=2)
    assert not p.look(130.0, settled=0, open_rows=2)
    p.resume(200.0)  # not stopped: nothing changes
    assert p.left(200.0) == 0.0
    assert p.look(201.0, settled=1, open_rows=1)  # progress gives it all back
    assert p.left(201.0) == 30.0
