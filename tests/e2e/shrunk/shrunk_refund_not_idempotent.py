"""webhook-replay (seed 1), shrunk by tokenchaos shrink from run 20261202T180538Z-5cf45c
(reference with flaw refund_not_idempotent): 2 ops of 19 that still break conservation
(tokens_destroyed); they broke it in 10 of 10 replays.

Replays the schedule with fresh users, up to RUNS times (a race does not show every time),
and fails when a run breaks conservation. Against the local stack with the flaw:

    pytest test_shrunk_webhook_replay.py --tokenchaos-flaw refund_not_idempotent

and against the correct local service, where it passes: leave the flaw out.
Against a target of your own: --tokenchaos-target PROFILE.toml (see tokenchaos --help).
"""

SCHEDULE = {'schedule_version': 1,
 'scenario': 'webhook-replay',
 'seed': 1,
 'users': {'fan_1': 'fan'},
 'checker': 'conservation',
 'anomaly_kind': 'tokens_destroyed',
 'steps': [{'policy': {'duplicates_count': 0,
                       'replays_count': 2,
                       'replay_delay_ms': 100,
                       'delay_ms_max': 0,
                       'reorder': False,
                       'hold_ms_max': 5000,
                       'drop_count': 0,
                       'stale_count': 1,
                       'forgeries': [],
                       'event_types': [],
                       'retry_backoff_ms_base': 50,
                       'retry_backoff_ms_max': 2000,
                       'attempts_max': 8,
                       'seed': 577090037}},
           {'batch': [{'id': 1,
                       'f': 'purchase',
                       'value': {'user': 'fan_1',
                                 'purchase': 'p_1',
                                 'amount_tokens': 1000,
                                 'payment_method': 'pm_card_visa'},
                       'idempotency_key': 'webhook-replay-s1-k00001'}],
            'window': None},
           {'settle': True},
           {'settle': True},
           {'settle': True},
           {'batch': [{'id': 11,
                       'f': 'refund',
                       'value': {'purchase': 'p_1', 'amount_cents': 812},
                       'idempotency_key': None}],
            'window': None},
           {'settle': True}]}

RUNS = 10


def test_shrunk_webhook_replay_holds(tokenchaos_schedule):
    outcome = tokenchaos_schedule(SCHEDULE, runs=RUNS)
    assert outcome.held, outcome.summary
