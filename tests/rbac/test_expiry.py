"""Assignments with an expiry date."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from rbac_helpers import compile_policy, errors_of, role, user

import rbac

PA = (
    role("ops", ["vm1"], [6])
    + role("view", ["vm1", "vm2"], [2])
    + role("senior", ["hq"], [6], extra='<Inherits role="ops"/>')
)

BEFORE = datetime(2026, 12, 31, 12, 0, tzinfo=UTC)
LAST_SECOND = datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)
AFTER = datetime(2027, 1, 1, 0, 0, tzinfo=UTC)


@pytest.fixture
def pol():
    return compile_policy(
        user("temp", "ops", "view", expires={"ops": "2026-12-31"})
        + user("gone", "ops", expires={"ops": "2026-12-31"})
        + user("lead", "senior", expires={"senior": "2026-12-31T18:00:00+01:00"})
        + user("perm", "ops"),
        PA,
    )


def test_date_only_means_through_the_end_of_that_day_utc(pol):
    assert pol.decide("temp", 6, "vm1", now=BEFORE).allowed
    assert pol.decide("temp", 6, "vm1", now=LAST_SECOND).allowed
    d = pol.decide("temp", 6, "vm1", now=AFTER)
    assert not d
    assert d.reason == "assignment of role ops to temp expired on 2026-12-31"


def test_other_assignments_keep_working(pol):
    assert pol.decide("temp", 2, "vm2", now=AFTER).allowed
    assert pol.decide("perm", 6, "vm1", now=AFTER).allowed


def test_all_assignments_expired(pol):
    d = pol.decide("gone", 2, "vm2", now=AFTER)
    assert d.reason == (
        "no role of user 'gone' grants operation 2 (list) on 'vm2'; "
        "assignment of role ops to gone expired on 2026-12-31"
    )


def test_datetime_with_offset(pol):
    assert pol.decide("lead", 6, "vm1", now=datetime(2026, 12, 31, 16, 59, tzinfo=UTC)).allowed
    d = pol.decide("lead", 6, "vm1", now=datetime(2026, 12, 31, 17, 0, tzinfo=UTC))
    assert d.reason == "assignment of role senior to lead expired on 2026-12-31T18:00:00+01:00"


def test_now_may_be_a_timestamp_or_naive_utc(pol):
    assert pol.decide("temp", 6, "vm1", now=BEFORE.timestamp()).allowed
    assert not pol.decide("temp", 6, "vm1", now=AFTER.timestamp())
    assert not pol.decide("temp", 6, "vm1", now=datetime(2027, 1, 1))


def test_time_can_go_back_and_forth(pol):
    # decisions cache the profile in force between expiry instants; a caller passing an
    # earlier `now` afterwards must still get the right answer
    assert not pol.decide("temp", 6, "vm1", now=AFTER)
    assert pol.decide("temp", 6, "vm1", now=BEFORE)
    assert not pol.decide("temp", 6, "vm1", now=AFTER)


def test_the_clock_is_used_by_default():
    pol = compile_policy(
        user("old", "ops", expires={"ops": "2001-01-01"})
        + user("new", "ops", expires={"ops": "2999-01-01"}),
        PA,
    )
    assert not pol.decide("old", 6, "vm1")
    assert pol.decide("new", 6, "vm1")


def test_review_functions_respect_expiry(pol):
    assert pol.assigned_roles("temp", now=BEFORE) == ("ops", "view")
    assert pol.assigned_roles("temp", now=AFTER) == ("view",)
    assert pol.assigned_users("ops", now=AFTER) == ("perm",)
    assert pol.authorized_roles("lead", now=BEFORE) == ("ops", "senior")
    assert pol.authorized_roles("lead", now=AFTER) == ()
    assert pol.authorized_users("ops", now=BEFORE) == ("gone", "lead", "perm", "temp")
    assert pol.authorized_users("ops", now=AFTER) == ("perm",)
    assert pol.authorized_users_for(6, "vm1", now=AFTER) == ("perm",)
    assert pol.user_operations_on_object("temp", "vm1", now=AFTER) == (2,)
    assert [a.expires_text for a in pol.assignments("temp")] == ["2026-12-31", None]
    assert pol.filter_visible("temp", 6, [("vm1", None)], now=AFTER) == []


def test_sessions_lose_expired_roles(pol):
    s = pol.create_session("temp", now=BEFORE)
    assert s.active_roles == ("ops", "view")
    assert s.check_access(6, "vm1", now=BEFORE).allowed
    d = s.check_access(6, "vm1", now=AFTER)
    assert not d and d.reason == "assignment of role ops to temp expired on 2026-12-31"
    with pytest.raises(rbac.SessionError, match="expired on 2026-12-31"):
        pol.create_session("temp", ["ops"], now=AFTER)


def test_explanation_marks_expired_assignments(pol):
    text = str(pol.explain("temp", 6, "vm1", now=AFTER))
    assert "ops (ua.xml:3), EXPIRED 2026-12-31" in text
    assert "[match, but assignment expired] pa.xml:3: role ops accepts operation 6" in text


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("tomorrow", "is not an ISO 8601 date (2027-01-31) or date-time with a time zone"),
        ("2027-02-30", "is not a valid date (YYYY-MM-DD)"),
        ("2027-01-31T10:00:00", "has no time zone; add Z for UTC"),
        ("", "is not an ISO 8601 date"),
        ("9999-12-31", "is too far in the future; leave 'expires' out for no expiry"),
        ("9999-12-31T23:59:59-05:00", "is too far in the future"),
    ],
)
def test_bad_expiry_is_a_load_error(text, why):
    with pytest.raises(rbac.PolicyError) as ei:
        compile_policy(user("u", "ops", expires={"ops": text}), PA)
    (msg,) = errors_of(ei.value)
    assert msg.startswith(f"ua.xml:3: assignment of role 'ops' to user 'u': expiry '{text}'")
    assert why in msg


def test_a_long_bad_expiry_is_not_echoed_in_full():
    junk = "x" * 10_000
    with pytest.raises(rbac.PolicyError) as ei:
        compile_policy(user("u", "ops", expires={"ops": junk}), PA)
    (msg,) = errors_of(ei.value)
    assert "'xxxxxxxx" in msg and len(msg) < 300
