"""retry-storm (seed 1), shrunk by tokenchaos shrink from run 20261202T180616Z-7409a0
(reference with flaw tip_ignores_idempotency_key): 4 ops of 70 that still break
reconciliation (impossible_read); they broke it in 10 of 10 replays.

Replays the schedule with fresh users, up to RUNS times (a race does not show every time),
and fails when a run breaks reconciliation. Against the local stack with the flaw:

    pytest test_shrunk_retry_storm.py --tokenchaos-flaw tip_ignores_idempotency_key

and against the correct local service, where it passes: leave the flaw out.
Against a target of your own: --tokenchaos-target PROFILE.toml (see tokenchaos --help).
"""

SCHEDULE = {'schedule_version': 1,
 'scenario': 'retry-storm',
 'seed': 1,
 'users': {'fan_0': 'fan', 'creator_1': 'creator'},
 'checker': 'reconciliation',
 'anomaly_kind': 'impossible_read',
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
           {'batch': [{'id': 0,
                       'f': 'purchase',
                       'value': {'user': 'fan_0',
                                 'purchase': 'p_0',
                                 'amount_tokens': 1000,
                                 'payment_method': 'pm_card_visa'},
                       'idempotency_key': 'retry-storm-s1-k00000'}],
            'window': None},
           {'settle': True},
           {'batch': [{'id': 6,
                       'f': 'tip',
                       'value': {'sender': 'fan_0',
                                 'recipient': 'creator_1',
                                 'amount_tokens': 35},
                       'idempotency_key': 'retry-storm-s1-k00006'},
                      {'id': 14,
                       'f': 'tip',
                       'value': {'sender': 'fan_0',
                                 'recipient': 'creator_1',
                                 'amount_tokens': 35},
                       'idempotency_key': 'retry-storm-s1-k00006'}],
            'window': None},
           {'settle': True},
           {'batch': [{'id': 69,
                       'f': 'read_balance',
                       'value': {'user': 'creator_1'},
                       'idempotency_key': None}],
            'window': None}]}

RUNS = 10


def test_shrunk_retry_storm_holds(tokenchaos_schedule):
    outcome = tokenchaos_schedule(SCHEDULE, runs=RUNS)
    assert outcome.held, outcome.summary
