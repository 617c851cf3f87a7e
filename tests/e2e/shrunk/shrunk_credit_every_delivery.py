"""duplicate-purchase (seed 1), shrunk by tokenchaos shrink from run
20261202T180528Z-d12a04 (reference with flaw credit_every_delivery): 1 ops of 29 that
still break conservation (tokens_created); they broke it in 10 of 10 replays.

Replays the schedule with fresh users, up to RUNS times (a race does not show every time),
and fails when a run breaks conservation. Against the local stack with the flaw:

    pytest test_shrunk_duplicate_purchase.py --tokenchaos-flaw credit_every_delivery

and against the correct local service, where it passes: leave the flaw out.
Against a target of your own: --tokenchaos-target PROFILE.toml (see tokenchaos --help).
"""

SCHEDULE = {'schedule_version': 1,
 'scenario': 'duplicate-purchase',
 'seed': 1,
 'users': {'fan_3': 'fan'},
 'checker': 'conservation',
 'anomaly_kind': 'tokens_created',
 'steps': [{'policy': {'duplicates_count': 2,
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
           {'batch': [{'id': 19,
                       'f': 'purchase',
                       'value': {'user': 'fan_3',
                                 'purchase': 'p_11',
                                 'amount_tokens': 500,
                                 'payment_method': 'pm_card_visa'},
                       'idempotency_key': 'duplicate-purchase-s1-k00011'}],
            'window': None},
           {'settle': True},
           {'settle': True}]}

RUNS = 10


def test_shrunk_duplicate_purchase_holds(tokenchaos_schedule):
    outcome = tokenchaos_schedule(SCHEDULE, runs=RUNS)
    assert outcome.held, outcome.summary
