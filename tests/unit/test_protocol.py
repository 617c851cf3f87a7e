"""The sans-IO protocol: requests built from profiles, canned responses read into outcomes."""

from __future__ import annotations

import dataclasses
import json
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.errors import ProviderError, TargetError, UsageError
from harness.model import BODY_EXCERPT_CHARS_MAX, F, Kind, Op, Outcome
from harness.protocol import (
    Credentials,
    CredentialsRefused,
    Endpoints,
    FlowContext,
    HttpRequest,
    HttpResponse,
    Resolver,
    Unresolved,
    Unsupported,
    body_excerpt,
    credentials_refused,
    drive_sync,
    json_path,
    op_flow,
    render_json,
    render_text,
)
from harness.targets.profile import AuthSpec, Idempotency, Profile, ReplayRule, load_profile

TARGET = "http://target.test"
PROVIDER = "http://provider.test"
REFERENCE = load_profile("reference", environ={})
SEED = load_profile("seed", environ={})


def _resolver() -> Resolver:
    return Resolver(users={"fan_0": Credentials(target_id="7", token="tok-fan"),
                           "creator_0": Credentials(target_id="9", token="tok-creator")})


def _ctx(profile=REFERENCE, resolver: Resolver | None = None, *, provider: str | None = PROVIDER,
         body_max: int = 10_000) -> FlowContext:
    return FlowContext(profile=profile,
                       endpoints=Endpoints(target_url=TARGET, provider_url=provider),
                       resolver=resolver or _resolver(), response_body_bytes_max=body_max)


def _json(status: int, body: object) -> HttpResponse:
    return HttpResponse(status_code=status, body=json.dumps(body).encode())


def _run(op: Op, ctx: FlowContext, *answers: HttpResponse | Outcome
         ) -> tuple[list[HttpRequest], Outcome]:
    """Drive the op's flow over canned answers; return the requests it made and its outcome."""
    sent: list[HttpRequest] = []
    queue = list(answers)

    def send(request: HttpRequest) -> HttpResponse | Outcome:
        sent.append(request)
        return queue.pop(0)

    outcome = drive_sync(op_flow(op, ctx), send)
    assert not queue, "the flow made fewer requests than answers were given"
    return sent, outcome


def _headers(request: HttpRequest) -> dict[str, str]:
    return dict(request.headers)


def tip(amount: int = 60, key: str | None = "k-1") -> Op:
    return Op(id=3, f=F.TIP, value={"sender": "fan_0", "recipient": "creator_0",
                                    "amount_tokens": amount}, idempotency_key=key)


PURCHASE = Op(id=1, f=F.PURCHASE, value={"user": "fan_0", "purchase": "p_0",
                                         "amount_tokens": 500, "payment_method": "pm_card_visa"},
              idempotency_key="k-0")


# -- target requests ----------------------------------------------------------------------


def test_purchase_request_carries_typed_body_bearer_token_and_idempotency_key() -> None:
    sent, _ = _run(PURCHASE, _ctx(), _json(201, {"intent_id": "pi_1", "status": "succeeded"}))
    request = sent[0]
    assert (request.method, request.url) == ("POST", TARGET + "/v1/purchases")
    assert json.loads(request.body) == {"tokens": 500, "payment_method": "pm_card_visa"}
    headers = _headers(request)
    assert headers["Authorization"] == "Bearer tok-fan"
    assert headers["Idempotency-Key"] == "k-0"
    assert headers["Content-Type"] == "application/json"


def test_tip_request_casts_the_recipient_id_to_int_for_the_reference_service() -> None:
    sent, _ = _run(tip(), _ctx(), _json(201, {"tip_id": "t_1", "balance": 40}))
    assert json.loads(sent[0].body) == {"to": 9, "amount": 60}


def test_seed_tip_sends_the_creator_id_as_text_and_no_idempotency_header() -> None:
    sent, _ = _run(tip(), _ctx(SEED), _json(200, {"success": True, "senderBalance": "40"}))
    assert json.loads(sent[0].body) == {"creatorId": "9", "tokenAmount": 60, "channel": "tip"}
    assert "Idempotency-Key" not in _headers(sent[0])


def test_seed_purchase_puts_the_idempotency_key_in_the_body() -> None:
    sent, outcome = _run(PURCHASE, _ctx(SEED),
                         _json(200, {"success": True,
                                     "paymentIntent": {"id": "pi_9", "status": "processing"}}))
    assert json.loads(sent[0].body)["clientIdempotencyKey"] == "k-0"
    assert outcome.value == {"intent_id": "pi_9", "purchase_status": "processing"}


def test_call_charge_path_is_filled_and_quoted_from_the_learned_call_id() -> None:
    resolver = _resolver()
    resolver.calls["c_0"] = "call/1"
    op = Op(id=5, f=F.CALL_CHARGE, value={"user": "fan_0", "creator": "creator_0", "call": "c_0",
                                          "minute": 2, "amount_tokens": 10}, idempotency_key="k")
    sent, _ = _run(op, _ctx(resolver=resolver), _json(201, {"charge_id": "ch", "balance": 0}))
    assert sent[0].url == TARGET + "/v1/calls/call%2F1/charges"
    assert json.loads(sent[0].body) == {"minute": 2}


def test_read_balance_is_a_get_without_a_body() -> None:
    op = Op(id=2, f=F.READ_BALANCE, value={"user": "fan_0"})
    sent, outcome = _run(op, _ctx(), _json(200, {"balance": 5, "debt": 0, "status": "active"}))
    assert (sent[0].method, sent[0].body) == ("GET", b"")
    assert outcome == Outcome(kind=Kind.OK, status_code=200, value={
        "balance_tokens": 5, "debt_tokens": 0, "status": "active"})


# -- target responses ---------------------------------------------------------------------


def test_ok_tip_reads_its_results_and_turns_token_counts_sent_as_text_into_ints() -> None:
    _, outcome = _run(tip(), _ctx(SEED), _json(200, {"senderBalance": "40"}))
    assert outcome.kind == Kind.OK
    assert outcome.value == {"tip_id": None, "balance_tokens": 40}


@pytest.mark.parametrize(("status", "kind", "error"), [
    (402, Kind.FAIL, "insufficient_funds"),
    (404, Kind.FAIL, "not_found"),
    (409, Kind.FAIL, "idempotency_conflict"),
    (422, Kind.FAIL, "invalid"),
    (500, Kind.INFO, "server_error_5xx: x"),
    (503, Kind.INFO, "server_error_5xx: x"),
    (418, Kind.INFO, "unexpected_status"),
    (302, Kind.INFO, "unexpected_status"),
])
def test_tip_status_classification(status: int, kind: Kind, error: str) -> None:
    _, outcome = _run(tip(), _ctx(), _json(status, {"error": {"code": "x", "message": "m"}}))
    assert (outcome.kind, outcome.error, outcome.status_code) == (kind, error, status)


def test_a_5xx_keeps_the_services_own_error_code_so_a_deadlock_reads_as_one() -> None:
    body = {"error": {"code": "deadlock_detected", "message": "gave up after 5 retries"}}
    _, outcome = _run(tip(), _ctx(), _json(503, body))
    assert (outcome.kind, outcome.error) == (Kind.INFO, "server_error_5xx: deadlock_detected")


@pytest.mark.parametrize("body", [b"", b"<html>oops</html>", b'{"error": {"code": 7}}',
                                  b'{"error": {"code": "  "}}', b"[1, 2]"])
def test_a_5xx_without_a_readable_error_code_is_a_bare_server_error(body: bytes) -> None:
    _, outcome = _run(tip(), _ctx(), HttpResponse(status_code=500, body=body))
    assert (outcome.kind, outcome.error) == (Kind.INFO, "server_error_5xx")


def test_a_5xx_error_code_is_cut_to_a_bound() -> None:
    _, outcome = _run(tip(), _ctx(), _json(500, {"error": {"code": "x" * 500}}))
    assert outcome.error is not None
    assert outcome.error == "server_error_5xx: " + "x" * 64


def test_a_body_over_the_bound_is_info_even_with_an_ok_status() -> None:
    big = HttpResponse(status_code=201, body=b"x" * 101)
    _, outcome = _run(tip(), _ctx(body_max=100), big)
    assert (outcome.kind, outcome.error) == (Kind.INFO, "response_too_large")


def test_an_ok_body_that_is_not_json_is_still_ok_with_unknown_results() -> None:
    _, outcome = _run(tip(), _ctx(), HttpResponse(status_code=201, body=b"<html>"))
    assert outcome.kind == Kind.OK
    assert outcome.value == {"tip_id": None, "balance_tokens": None}


def test_call_charge_409_is_call_ended_unless_the_body_says_the_key_was_reused() -> None:
    resolver = _resolver()
    resolver.calls["c_0"] = "41"
    op = Op(id=5, f=F.CALL_CHARGE, value={"user": "fan_0", "creator": "creator_0", "call": "c_0",
                                          "minute": 1, "amount_tokens": 10}, idempotency_key="k")
    _, ended = _run(op, _ctx(resolver=resolver), _json(409, {"error": {"code": "call_ended"}}))
    _, reused = _run(op, _ctx(resolver=resolver),
                     _json(409, {"error": {"code": "idempotency_conflict"}}))
    assert ended.error == "call_ended"
    assert reused.error == "idempotency_conflict"


def test_a_transport_outcome_ends_the_flow_as_it_is() -> None:
    dropped = Outcome(kind=Kind.INFO, error="read_timeout")
    sent, outcome = _run(tip(), _ctx(), dropped)
    assert len(sent) == 1
    assert outcome == dropped


# -- resolution ---------------------------------------------------------------------------


def test_an_op_whose_call_never_opened_is_unresolved_before_anything_is_sent() -> None:
    op = Op(id=5, f=F.CALL_CHARGE, value={"user": "fan_0", "creator": "creator_0", "call": "c_9",
                                          "minute": 1, "amount_tokens": 10})
    with pytest.raises(Unresolved, match="c_9"):
        op_flow(op, _ctx())


def test_an_unknown_user_is_unresolved() -> None:
    op = Op(id=3, f=F.TIP, value={"sender": "fan_0", "recipient": "ghost", "amount_tokens": 1})
    with pytest.raises(Unresolved, match="ghost"):
        op_flow(op, _ctx())


def test_the_seed_charges_a_call_minute_without_a_call_id() -> None:
    op = Op(id=5, f=F.CALL_CHARGE, value={"user": "fan_0", "creator": "creator_0", "call": "c_0",
                                          "minute": 1, "amount_tokens": 10})
    sent, _ = _run(op, _ctx(SEED), _json(200, {"senderBalance": 0}))
    assert json.loads(sent[0].body) == {"creatorId": "9", "tokenAmount": 10, "callId": "c_0",
                                        "minute": 1}


def test_an_op_the_profile_lacks_is_unsupported() -> None:
    op = Op(id=4, f=F.CALL_OPEN, value={"user": "fan_0", "creator": "creator_0", "call": "c_0",
                                        "rate_tokens_per_minute": 10})
    with pytest.raises(Unsupported, match=r"\[ops.call_open\]"):
        op_flow(op, _ctx(SEED))


def test_resolver_learns_ids_from_ok_completions_only_and_keeps_the_first() -> None:
    resolver = _resolver()
    resolver.learn(PURCHASE, Outcome(kind=Kind.FAIL, error="card_declined"))
    assert "p_0" not in resolver.intents
    resolver.learn(PURCHASE, Outcome(kind=Kind.OK, value={"intent_id": "pi_1"}))
    resolver.learn(PURCHASE, Outcome(kind=Kind.OK, value={"intent_id": "pi_2"}))
    assert resolver.intent_id("p_0") == "pi_1"


# -- provider ops -------------------------------------------------------------------------


def _form(request: HttpRequest) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(request.body.decode()))


def _with_intent() -> Resolver:
    resolver = _resolver()
    resolver.intents["p_0"] = "pi_1"
    return resolver


def test_refund_is_form_encoded_to_the_provider_and_omits_an_amount_of_none() -> None:
    op = Op(id=8, f=F.REFUND, value={"purchase": "p_0", "amount_cents": None})
    sent, outcome = _run(op, _ctx(resolver=_with_intent()),
                         _json(200, {"id": "re_1", "payment_intent": "pi_1"}))
    request = sent[0]
    assert request.url == PROVIDER + "/v1/refunds"
    assert _form(request) == {"payment_intent": "pi_1"}
    assert _headers(request)["Authorization"].startswith("Bearer sk_test_")
    assert _headers(request)["Content-Type"] == "application/x-www-form-urlencoded"
    assert outcome.value == {"refund_id": "re_1", "intent_id": "pi_1"}


def test_partial_refund_sends_its_amount_in_cents() -> None:
    op = Op(id=8, f=F.REFUND, value={"purchase": "p_0", "amount_cents": 1250})
    sent, _ = _run(op, _ctx(resolver=_with_intent()), _json(200, {"id": "re_1"}))
    assert _form(sent[0]) == {"payment_intent": "pi_1", "amount": "1250"}


def test_authenticate_and_dispute_ops_use_the_test_helper_paths() -> None:
    resolver = _with_intent()
    authenticate = Op(id=1, f=F.AUTHENTICATE, value={"purchase": "p_0", "outcome": "fail"})
    sent, outcome = _run(authenticate, _ctx(resolver=resolver),
                         _json(200, {"id": "pi_1", "status": "requires_payment_method"}))
    assert sent[0].url == PROVIDER + "/v1/test_helpers/payment_intents/pi_1/authenticate"
    assert _form(sent[0]) == {"outcome": "fail"}
    assert outcome.value == {"intent_id": "pi_1", "purchase_status": "requires_payment_method"}
    opened = Op(id=2, f=F.DISPUTE_OPEN, value={"purchase": "p_0", "dispute": "d_0"})
    _, outcome = _run(opened, _ctx(resolver=resolver),
                      _json(200, {"id": "dp_1", "payment_intent": "pi_1"}))
    resolver.learn(opened, outcome)
    closed = Op(id=3, f=F.DISPUTE_CLOSE, value={"dispute": "d_0", "outcome": "won"})
    sent, _ = _run(closed, _ctx(resolver=resolver), _json(200, {"id": "dp_1", "status": "won"}))
    assert sent[0].url == PROVIDER + "/v1/test_helpers/disputes/dp_1/close"
    assert _form(sent[0]) == {"outcome": "won"}


def test_a_provider_4xx_is_a_fail_with_stripes_error_code() -> None:
    op = Op(id=8, f=F.REFUND, value={"purchase": "p_0", "amount_cents": 10**9})
    _, outcome = _run(op, _ctx(resolver=_with_intent()),
                      _json(400, {"error": {"type": "invalid_request_error",
                                            "code": "amount_too_large"}}))
    assert (outcome.kind, outcome.error) == (Kind.FAIL, "amount_too_large")


def test_provider_ops_without_a_provider_are_unsupported() -> None:
    op = Op(id=8, f=F.REFUND, value={"purchase": "p_0", "amount_cents": None})
    with pytest.raises(Unsupported):
        op_flow(op, _ctx(resolver=_with_intent(), provider=None))


# -- webhooks: two steps ------------------------------------------------------------------

ENVELOPE_BODY = json.dumps({"id": "evt_1", "type": "payment_intent.succeeded",
                            "data": {"object": {"id": "pi_1", "object": "payment_intent"}}})
ENVELOPE = _json(200, {"body": ENVELOPE_BODY,
                       "headers": {"Stripe-Signature": "t=1,v1=ab",
                                   "Content-Type": "application/json"}})


def _webhook(purchase: str | None = "p_0", variant: str = "replay") -> Op:
    return Op(id=9, f=F.WEBHOOK, value={"purchase": purchase,
                                        "event_type": "payment_intent.succeeded",
                                        "variant": variant})


def test_webhook_asks_the_provider_for_an_envelope_then_posts_it_to_the_target() -> None:
    sent, outcome = _run(_webhook(), _ctx(resolver=_with_intent()), ENVELOPE,
                         HttpResponse(status_code=200, body=b"{}"))
    ask, post = sent
    assert ask.url == PROVIDER + "/_tokenchaos/envelope"
    assert json.loads(ask.body) == {"intent_id": "pi_1", "event_type": "payment_intent.succeeded",
                                    "variant": "replay"}
    assert post.url == TARGET + "/v1/webhooks/stripe"
    assert post.body == ENVELOPE_BODY.encode()
    assert _headers(post)["Stripe-Signature"] == "t=1,v1=ab"
    assert [name for name, _ in post.headers].count("Content-Type") == 1
    assert outcome == Outcome(kind=Kind.OK, status_code=200,
                              value={"event_id": "evt_1", "intent_id": "pi_1"})


def test_webhook_envelope_request_carries_the_providers_control_key() -> None:
    ctx = _ctx(resolver=_with_intent())
    keyed = dataclasses.replace(ctx, endpoints=dataclasses.replace(
        ctx.endpoints, provider_control_key="tck_0123456789abcdef"))
    (ask, post), _ = _run(_webhook(), keyed, ENVELOPE, HttpResponse(status_code=200, body=b"{}"))
    assert _headers(ask)["Authorization"] == "Bearer tck_0123456789abcdef"
    assert "tck_0123456789abcdef" not in str(post.headers)  # the target never sees it


@pytest.mark.parametrize(("status", "kind", "error"), [
    (400, Kind.FAIL, "rejected"), (401, Kind.FAIL, "rejected"), (204, Kind.OK, None),
    (500, Kind.INFO, "server_error_5xx")])
def test_webhook_answers_classify_2xx_ok_4xx_rejected_5xx_info(
        status: int, kind: Kind, error: str | None) -> None:
    _, outcome = _run(_webhook(), _ctx(resolver=_with_intent()), ENVELOPE,
                      HttpResponse(status_code=status))
    assert (outcome.kind, outcome.error) == (kind, error)


def test_a_forged_webhook_for_no_purchase_asks_for_a_fabricated_intent() -> None:
    sent, _ = _run(_webhook(None, "unsigned"), _ctx(), ENVELOPE, HttpResponse(status_code=400))
    assert json.loads(sent[0].body)["intent_id"] is None


def test_an_envelope_the_provider_refuses_is_a_provider_error() -> None:
    with pytest.raises(ProviderError, match="envelope"):
        _run(_webhook(), _ctx(resolver=_with_intent()), _json(400, {"error": "bad variant"}))


# -- templates ----------------------------------------------------------------------------


def test_render_text_keeps_literal_braces_and_quotes_path_values() -> None:
    assert render_text("/a/{x}/{{b}}", {"x": "1 2"}, quote=True) == "/a/1%202/{b}"


def test_render_json_keeps_types_for_lone_placeholders_and_interpolates_the_rest() -> None:
    template = {"n": "{n}", "s": "{n:str}", "t": "id-{n}", "l": ["{m}", 3], "z": None}
    assert render_json(template, {"n": 5, "m": None}) == {
        "n": 5, "s": "5", "t": "id-5", "l": [None, 3], "z": None}


def test_an_int_cast_of_a_non_integer_id_says_how_to_fix_the_profile() -> None:
    with pytest.raises(UsageError, match=r"\{recipient_id:str\}"):
        render_json("{recipient_id:int}", {"recipient_id": "6f1c-uuid"})


@pytest.mark.parametrize(("data", "path", "expected"), [
    ({"a": {"b": 1}}, "a.b", 1), ({"a": [{"b": 2}]}, "a.0.b", 2), ({"a": []}, "a.0", None),
    ([1, 2], "", [1, 2]), (None, "a", None), ({"a": 1}, "a.b", None)])
def test_json_path(data: object, path: str, expected: object) -> None:
    assert json_path(data, path) == expected


def test_every_target_op_of_the_reference_profile_builds_a_request() -> None:
    resolver = _with_intent()
    resolver.calls["c_0"] = "1"
    ops: dict[F, Callable[[], Op]] = {
        F.PURCHASE: lambda: PURCHASE,
        F.TIP: tip,
        F.CALL_OPEN: lambda: Op(id=4, f=F.CALL_OPEN, value={
            "user": "fan_0", "creator": "creator_0", "call": "c_0", "rate_tokens_per_minute": 5}),
        F.CALL_CHARGE: lambda: Op(id=5, f=F.CALL_CHARGE, value={
            "user": "fan_0", "creator": "creator_0", "call": "c_0", "minute": 1,
            "amount_tokens": 5}),
        F.CALL_END: lambda: Op(id=6, f=F.CALL_END, value={"user": "fan_0", "call": "c_0"}),
        F.READ_BALANCE: lambda: Op(id=7, f=F.READ_BALANCE, value={"user": "fan_0"}),
    }
    for f, make in ops.items():
        flow = op_flow(make(), _ctx(resolver=resolver))
        request = next(flow)
        assert request.url.startswith(TARGET + "/v1/"), (f, request.url)
        flow.close()


# -- idempotency carriers -----------------------------------------------------------------


def _with_tip(**changes: object) -> Profile:
    """The reference profile with its tip op changed."""
    ops = dict(REFERENCE.ops)
    ops[F.TIP] = dataclasses.replace(REFERENCE.ops[F.TIP], **changes)  # type: ignore[arg-type]
    return dataclasses.replace(REFERENCE, ops=ops)


def _keys_sent(request: HttpRequest, key: str = "k-1") -> int:
    """How many times the op's key appears anywhere in the request."""
    return str(request.headers).count(key) + request.body.decode().count(key) + \
        request.url.count(key)


def test_an_op_without_idempotency_sends_no_key_even_when_the_scenario_gives_one() -> None:
    sent, _ = _run(tip(key="k-1"), _ctx(_with_tip(idempotency=Idempotency("none"))),
                   _json(201, {"tip_id": "t_1"}))
    assert _keys_sent(sent[0]) == 0
    assert not _with_tip(idempotency=Idempotency("none")).ops[F.TIP].idempotent


def test_a_header_carrier_sends_the_key_once_in_that_header() -> None:
    sent, _ = _run(tip(), _ctx(_with_tip(idempotency=Idempotency("header", "X-Key"))),
                   _json(201, {}))
    assert _headers(sent[0])["X-Key"] == "k-1"
    assert _keys_sent(sent[0]) == 1


def test_a_body_carrier_adds_the_top_level_field_and_no_header() -> None:
    sent, _ = _run(tip(), _ctx(_with_tip(idempotency=Idempotency("body", "clientKey"))),
                   _json(201, {}))
    assert json.loads(sent[0].body) == {"to": 9, "amount": 60, "clientKey": "k-1"}
    assert _keys_sent(sent[0]) == 1


def test_a_body_carrier_whose_template_already_has_the_field_sends_the_key_once() -> None:
    profile = _with_tip(idempotency=Idempotency("body", "clientKey"),
                        body={"to": "{recipient_id:int}", "clientKey": "{idempotency_key}"},
                        variables=frozenset({"recipient_id", "idempotency_key"}))
    sent, _ = _run(tip(), _ctx(profile), _json(201, {}))
    assert sent[0].body.count(b"k-1") == 1
    assert json.loads(sent[0].body) == {"to": 9, "clientKey": "k-1"}


def test_a_body_carrier_without_a_body_template_sends_the_key_alone() -> None:
    sent, _ = _run(tip(), _ctx(_with_tip(idempotency=Idempotency("body", "k"), body=None,
                                         variables=frozenset())), _json(201, {}))
    assert json.loads(sent[0].body) == {"k": "k-1"}
    assert _headers(sent[0])["Content-Type"] == "application/json"


def test_an_op_the_scenario_sends_without_a_key_gets_no_key_field() -> None:
    sent, _ = _run(tip(key=None), _ctx(_with_tip(idempotency=Idempotency("body", "k"))),
                   _json(201, {}))
    assert "k" not in json.loads(sent[0].body)


def test_a_header_template_that_carries_the_key_is_not_doubled() -> None:
    profile = _with_tip(idempotency=Idempotency("header", "X-Key"),
                        headers={"x-key": "{idempotency_key}"},
                        variables=frozenset({"recipient_id", "amount_tokens",
                                             "idempotency_key"}))
    sent, _ = _run(tip(), _ctx(profile), _json(201, {}))
    assert [name.lower() for name, _ in sent[0].headers].count("x-key") == 1
    assert _keys_sent(sent[0]) == 1


def test_the_seed_profile_sends_no_key_with_tips_or_call_minutes() -> None:
    charge = Op(id=5, f=F.CALL_CHARGE, value={"user": "fan_0", "creator": "creator_0",
                                              "call": "c_0", "minute": 1, "amount_tokens": 10},
                idempotency_key="k-1")
    for op in (tip(key="k-1"), charge):
        sent, _ = _run(op, _ctx(SEED), _json(200, {"senderBalance": 0}))
        assert _keys_sent(sent[0]) == 0, op.f


# -- replays ------------------------------------------------------------------------------


def test_an_ok_answer_with_the_replay_header_is_marked_replayed() -> None:
    replayed = HttpResponse(status_code=201, headers=(("idempotent-replayed", " true"),),
                            body=json.dumps({"tip_id": "t_1", "balance": 40}).encode())
    _, outcome = _run(tip(), _ctx(), replayed)
    assert outcome.value == {"tip_id": "t_1", "balance_tokens": 40, "replayed": 1}
    _, first = _run(tip(), _ctx(), _json(201, {"tip_id": "t_1", "balance": 40}))
    assert "replayed" not in first.value


@pytest.mark.parametrize(("billed", "marked"), [(False, True), (True, False), (0, False),
                                                ("false", False), (None, False)])
def test_a_body_replay_rule_compares_the_json_value_type_and_all(billed: object,
                                                                 marked: bool) -> None:
    profile = _with_tip(replay=ReplayRule("body", "charge.billed", False))
    _, outcome = _run(tip(), _ctx(profile), _json(201, {"charge": {"billed": billed}}))
    assert (outcome.value.get("replayed") == 1) is marked


def test_a_replay_rule_never_marks_a_refusal() -> None:
    failed = HttpResponse(status_code=402, headers=(("Idempotent-Replayed", "true"),),
                          body=b'{"error": {"code": "insufficient_funds"}}')
    _, outcome = _run(tip(), _ctx(), failed)
    assert outcome.kind == Kind.FAIL
    assert "replayed" not in outcome.value


# -- credentials --------------------------------------------------------------------------


def test_a_401_stops_the_run_with_the_fix_instead_of_recording_a_refusal() -> None:
    with pytest.raises(CredentialsRefused) as caught:
        _run(tip(), _ctx(), _json(401, {"error": {"code": "unauthorized"}}))
    message = str(caught.value)
    assert message.startswith("the target refused our credentials (401 on tip #3): check "
                              "[auth] header and scheme in reference.toml")
    assert "Authorization: Bearer <token>" in message
    assert isinstance(caught.value, TargetError)
    assert caught.value.exit_code == 2


def test_a_403_to_reading_ones_own_balance_stops_the_run() -> None:
    with pytest.raises(CredentialsRefused, match=r"\(403 on read_balance #2\)"):
        _run(Op(id=2, f=F.READ_BALANCE, value={"user": "fan_0"}), _ctx(), _json(403, {}))


def test_a_403_to_a_spend_is_an_ordinary_refusal() -> None:
    # Another user's call, a creator tipping: a correct service may say 403 to these.
    _, outcome = _run(tip(), _ctx(), _json(403, {"error": {"code": "forbidden"}}))
    assert (outcome.kind, outcome.error) == (Kind.FAIL, "forbidden")


@pytest.mark.parametrize(("f", "status", "refused"), [
    (F.TIP, 401, True), (F.PURCHASE, 401, True), (F.CALL_CHARGE, 401, True),
    (F.READ_BALANCE, 401, True), (F.READ_BALANCE, 403, True), (F.TIP, 403, False),
    (F.CALL_CHARGE, 403, False), (F.CALL_END, 403, False), (F.WEBHOOK, 401, False),
    (F.WEBHOOK, 403, False), (F.REFUND, 401, False), (F.TIP, 400, False)])
def test_credentials_refused_table(f: F, status: int, refused: bool) -> None:
    assert credentials_refused(f, status) is refused


def test_a_bare_token_profile_sends_the_token_alone() -> None:
    profile = dataclasses.replace(REFERENCE, auth=AuthSpec(header="X-Api-Key", scheme=None))
    sent, _ = _run(tip(), _ctx(profile), _json(201, {}))
    assert _headers(sent[0])["X-Api-Key"] == "tok-fan"
    assert "Authorization" not in _headers(sent[0])


# -- body excerpts ------------------------------------------------------------------------


def test_a_5xx_keeps_a_bounded_excerpt_of_its_body() -> None:
    body = b"ERROR: deadlock detected\nDETAIL: Process 81 waits for ShareLock" + b"." * 2000
    _, outcome = _run(tip(), _ctx(), HttpResponse(status_code=500, body=body))
    assert outcome.body_excerpt is not None
    assert outcome.body_excerpt.startswith("ERROR: deadlock detected")
    assert len(outcome.body_excerpt) == BODY_EXCERPT_CHARS_MAX


def test_an_unexpected_status_keeps_its_body_and_bad_utf8_is_replaced() -> None:
    _, outcome = _run(tip(), _ctx(), HttpResponse(status_code=418, body=b"teapot \xff!"))
    assert (outcome.error, outcome.body_excerpt) == ("unexpected_status", "teapot \ufffd!")


def test_ok_and_fail_answers_keep_no_excerpt() -> None:
    _, ok = _run(tip(), _ctx(), _json(201, {"tip_id": "t"}))
    _, failed = _run(tip(), _ctx(), _json(402, {"error": {"code": "insufficient_funds"}}))
    assert ok.body_excerpt is None
    assert failed.body_excerpt is None


def test_a_webhook_answered_5xx_keeps_its_body() -> None:
    _, outcome = _run(_webhook(), _ctx(resolver=_with_intent()), ENVELOPE,
                      HttpResponse(status_code=500, body=b"relation does not exist"))
    assert outcome.body_excerpt == "relation does not exist"


def test_body_excerpt_cuts_characters_not_bytes() -> None:
    assert body_excerpt("é".encode() * 600) == "é" * BODY_EXCERPT_CHARS_MAX
    assert body_excerpt(b"") == ""


FOREIGN = load_profile(Path(__file__).parents[1] / "foreign" / "foreign.toml",
                       environ={"FOREIGN_STAGING_TOKEN": "staging"})


@pytest.mark.parametrize(("tokens", "bundle"), [(250, "starter"), (1000, "plus"), (4000, "mega")])
def test_a_purchase_sends_the_services_name_of_its_package(tokens: int, bundle: str) -> None:
    op = dataclasses.replace(PURCHASE, value={**PURCHASE.value, "amount_tokens": tokens})
    request = op_flow(op, _ctx(FOREIGN)).send(None)
    assert json.loads(request.body)["bundle"] == bundle


def test_a_purchase_of_no_package_is_unresolved_where_the_profile_sends_its_name() -> None:
    op = dataclasses.replace(PURCHASE, value={**PURCHASE.value, "amount_tokens": 300})
    with pytest.raises(Unresolved, match=r"300 tokens is not a package.*sends \{package\}"):
        op_flow(op, _ctx(FOREIGN)).send(None)
