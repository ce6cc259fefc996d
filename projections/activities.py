"""The activity feed (``proj_activities``): executions and purchases together, with refunds, grants,
expiries and disputes, each with its ``kind`` and signed amount.

A reservation shows as what it holds (``kind`` 'reservation', the hold as a debit) and what comes
back of it when it is settled for less, released or expires as a positive ``refund`` of its
operation; the settlement's usage then stays in the history only, so the feed's amounts for one
reservation add up to what it cost. A hold moves what is available, not the balance, so its row
shows the balance unchanged; a settlement's refund shows the balance after the settlement (its
usage included). ``proj_reservations`` remembers each hold's operation and amount.
"""

from __future__ import annotations

from projections.projector import Projector

_A = "data->'attribution'"

ACTIVITIES = Projector(
    name="activities",
    tables=("proj_reservations", "proj_activities"),
    types=frozenset({
        "UsageMetered", "CreditsReserved", "CreditsReleased", "CreditsPurchased", "RefundIssued",
        "CreditsGranted", "CouponApplied", "AllowanceGranted", "GrantExpired", "PurchaseDisputed",
        "DisputeClosed"}),
    statements=(
        # First, so a hold and its release in the same span find each other.
        "INSERT INTO {proj_reservations} (account_id, reservation_id, operation, held_ucr)"
        " SELECT account_id, (data->>'reservation_id')::uuid, data->>'operation', (data->>'held_ucr')::bigint"
        " FROM events WHERE {span} AND type = 'CreditsReserved'",
        # Keyed by the event (no ON CONFLICT): folding an event twice fails loudly.
        "WITH e AS (SELECT account_id, version, event_id, occurred_at, type, amount_ucr, balance_after_ucr, data"
        " FROM events WHERE {span} AND type = ANY(:types))"
        " INSERT INTO {proj_activities} (account_id, version, event_id, occurred_at, kind, operation, amount_ucr,"
        " balance_after_ucr, execution_id, reservation_id, detail)"
        " SELECT account_id, version, event_id, occurred_at, 'execution', data->>'operation', amount_ucr,"
        f" balance_after_ucr, {_A}->>'execution', NULL,"
        " jsonb_strip_nulls(jsonb_build_object('quantities', data->'quantities', 'attribution',"
        f" jsonb_strip_nulls({_A}), 'deployment_id', data->'deployment_id', 'hour_index', data->'hour_index',"
        " 'gated', data->'gated', 'debt_added_ucr', data->'debt_added_ucr'))"
        " FROM e WHERE type = 'UsageMetered' AND data->>'reservation_id' IS NULL"
        " UNION ALL"
        " SELECT account_id, version, event_id, occurred_at, 'reservation', data->>'operation',"
        " -(data->>'held_ucr')::bigint, balance_after_ucr, NULL, (data->>'reservation_id')::uuid,"
        " jsonb_build_object('expires_at', data->'expires_at')"
        " FROM e WHERE type = 'CreditsReserved'"
        " UNION ALL"
        " SELECT e.account_id, e.version, e.event_id, e.occurred_at, 'refund', COALESCE(r.operation, 'reservation'),"
        # A settlement releases the hold, then meters what was used (held - released, as something
        # came back): its refund shows the balance after both, the account's balance once settled.
        " (e.data->>'released_ucr')::bigint, e.balance_after_ucr - CASE WHEN e.data->>'reason' = 'settled'"
        " THEN COALESCE(r.held_ucr - (e.data->>'released_ucr')::bigint, 0) ELSE 0 END, NULL, r.reservation_id,"
        " jsonb_build_object('refund_of', 'reservation', 'reason', e.data->'reason', 'held_ucr', r.held_ucr)"
        " FROM e LEFT JOIN {proj_reservations} r ON r.account_id = e.account_id"
        " AND r.reservation_id = (e.data->>'reservation_id')::uuid"
        " WHERE e.type = 'CreditsReleased' AND (e.data->>'released_ucr')::bigint > 0"
        " UNION ALL"
        " SELECT account_id, version, event_id, occurred_at, 'purchase', COALESCE(data->>'pack_id', data->>'kind'),"
        " amount_ucr, balance_after_ucr, NULL, NULL,"
        " jsonb_strip_nulls(jsonb_build_object('purchase_kind', data->'kind', 'pack_id', data->'pack_id',"
        " 'cents_paid', data->'cents_paid', 'credits_ucr', data->'credits_ucr', 'bonus_ucr', data->'bonus_ucr',"
        " 'receipt_url', data->'receipt_url', 'stripe_payment_intent', data->'stripe_payment_intent'))"
        " FROM e WHERE type = 'CreditsPurchased'"
        " UNION ALL"
        " SELECT account_id, version, event_id, occurred_at, 'refund', data->>'direction', amount_ucr,"
        " balance_after_ucr, NULL, NULL,"
        " jsonb_strip_nulls(jsonb_build_object('refund_of', 'purchase', 'purchase_id', data->'purchase_id',"
        " 'reason', data->'reason', 'requested_ucr', data->'requested_ucr', 'capped', data->'capped'))"
        " FROM e WHERE type = 'RefundIssued'"
        " UNION ALL"
        " SELECT account_id, version, event_id, occurred_at, 'grant',"
        " CASE type WHEN 'CreditsGranted' THEN data->>'source' WHEN 'CouponApplied' THEN 'coupon'"
        " ELSE 'allowance' END, amount_ucr, balance_after_ucr, NULL, NULL,"
        " jsonb_strip_nulls(jsonb_build_object('reason', data->'reason', 'code', data->'code',"
        " 'plan', data->'plan', 'cycle', data->'cycle', 'expires_at', data->'expires_at'))"
        " FROM e WHERE type IN ('CreditsGranted', 'CouponApplied', 'AllowanceGranted')"
        " UNION ALL"
        " SELECT account_id, version, event_id, occurred_at, 'expiry', data->>'source', amount_ucr,"
        " balance_after_ucr, NULL, NULL, jsonb_build_object('grant_id', data->'grant_id')"
        " FROM e WHERE type = 'GrantExpired'"
        " UNION ALL"
        " SELECT account_id, version, event_id, occurred_at, 'dispute',"
        " CASE type WHEN 'PurchaseDisputed' THEN 'disputed' ELSE 'dispute_' || (data->>'outcome') END,"
        " amount_ucr, balance_after_ucr, NULL, NULL,"
        " jsonb_strip_nulls(jsonb_build_object('purchase_id', data->'purchase_id', 'dispute_id', data->'dispute_id'))"
        " FROM e WHERE type IN ('PurchaseDisputed', 'DisputeClosed')",
    ),
)
