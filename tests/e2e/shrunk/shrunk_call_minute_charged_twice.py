"""mid-call-refund (seed 1), shrunk by tokenchaos shrink from run 20261202T180557Z-7b1199
(reference with flaw call_minute_charged_twice): 5 ops of 61 that still break
reconciliation (impossible_read); they broke it in 10 of 10 replays.

Replays the schedule with fresh users, up to RUNS times (a race does not show every time),
and fails when a run breaks reconciliation. Against the local stack with the flaw:

    pytest test_shrunk_mid_call_refund.py --tokenchaos-flaw call_minute_charged_twice

and against the correct local service, where it passes: leave the flaw out.
Against a target of your own: --tokenchaos-target PROFILE.toml (see tokenchaos --help).
"""

SCHEDULE = {'schedule_version': 1,
 'scenario': 'mid-call-refund',
 'seed': 1,
 'users': {'fan_1': 'fan', 'creator_0': 'creator'},
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
           {'batch': [{'id': 1,
                       'f': 'purchase',
                       'value': {'user': 'fan_1',
                                 'purchase': 'p_1',
                                 'amount_tokens': 500,
                                 'payment_method': 'pm_card_visa'},
                       'idempotency_key': 'mid-call-refund-s1-k00001'}],
            'window': None},
           {'settle': True},
           {'batch': [{'id': 4,
                       'f': 'call_open',
                       'value': {'user': 'fan_1',
                                 'creator': 'creator_0',
                                 'call': 'c_1',
                                 'rate_tokens_per_minute': 18},
                       'idempotency_key': 'mid-call-refund-s1-k00004'}],
            'window': None},
           {'batch': [{'id': 12,
                       'f': 'call_charge',
                       'value': {'user': 'fan_1',
                                 'creator': 'creator_0',
                                 'call': 'c_1',
                                 'minute': 1,
                                 'amount_tokens': 18},
                       'idempotency_key': 'mid-call-refund-s1-k00011'},
                      {'id': 16,
                       'f': 'call_charge',
                       'value': {'user': 'fan_1',
                                 'creator': 'creator_0',
                                 'call': 'c_1',
                                 'minute': 1,
                                 'amount_tokens': 18},
                       'idempotency_key': 'mid-call-refund-s1-k00015'}],
            'window': None},
           {'settle': True},
           {'settle': True},
           {'batch': [{'id': 60,
                       'f': 'read_balance',
                       'value': {'user': 'creator_0'},
                       'idempotency_key': None}],
            'window': None}]}

RUNS = 10


def test_shrunk_mid_call_refund_holds(tokenchaos_schedule):
    outcome = tokenchaos_schedule(SCHEDULE, runs=RUNS)
    assert outcome.held, outcome.summary
