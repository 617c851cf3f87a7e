"""tip-cycle (seed 1), shrunk by tokenchaos shrink from run 20261202T180609Z-643932
(reference with flaw tip_lock_order_deadlock): 2 ops of 132 that still break errors
(server_error); they broke it in 5 of 10 replays.

Replays the schedule with fresh users, up to RUNS times (a race does not show every time),
and fails when a run breaks errors. Against the local stack with the flaw:

    pytest test_shrunk_tip_cycle.py --tokenchaos-flaw tip_lock_order_deadlock

and against the correct local service, where it passes: leave the flaw out.
Against a target of your own: --tokenchaos-target PROFILE.toml (see tokenchaos --help).
"""

SCHEDULE = {'schedule_version': 1,
 'scenario': 'tip-cycle',
 'seed': 1,
 'users': {'creator_0': 'creator', 'creator_2': 'creator'},
 'checker': 'errors',
 'anomaly_kind': 'server_error',
 'steps': [{'policy': {'duplicates_count': 0,
                       'replays_count': 0,
                       'replay_delay_ms': 200,
                       'delay_ms_max': 0,
                       'reorder': False,
                       'hold_ms_max': 5000,
                       'drop_count': 0,
                       'stale_count': 0,
                       'forgeries': [],
                       'event_types': [],
                       'retry_backoff_ms_base': 50,
                       'retry_backoff_ms_max': 2000,
                       'attempts_max': 8,
                       'seed': 577090037}},
           {'settle': True},
           {'batch': [{'id': 126,
                       'f': 'tip',
                       'value': {'sender': 'creator_2',
                                 'recipient': 'creator_0',
                                 'amount_tokens': 6},
                       'idempotency_key': 'tip-cycle-s1-k00122'},
                      {'id': 125,
                       'f': 'tip',
                       'value': {'sender': 'creator_0',
                                 'recipient': 'creator_2',
                                 'amount_tokens': 1},
                       'idempotency_key': 'tip-cycle-s1-k00121'}],
            'window': None},
           {'settle': True}]}

RUNS = 10


def test_shrunk_tip_cycle_holds(tokenchaos_schedule):
    outcome = tokenchaos_schedule(SCHEDULE, runs=RUNS)
    assert outcome.held, outcome.summary
