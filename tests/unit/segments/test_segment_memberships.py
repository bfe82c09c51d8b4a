"""Membership semantics: rule matches, manual adds (sticky), manual removals (exclusions), clearing them,
and when a membership starts."""

from __future__ import annotations

from datetime import date

import pytest

from services.segment_engine import domain
from services.segment_engine.domain import Action, Membership, NotAMember, NotExcluded, Reason

DAY1, DAY2, DAY3 = date(2026, 6, 1), date(2026, 6, 2), date(2026, 6, 3)
BY_RULE = {"entered": Reason.RULE_MATCHED, "left": Reason.RULE_STOPPED_MATCHING}


def rule(m: Membership, notes: str | None, today: date = DAY1) -> tuple[Membership, domain.Transition | None]:
    return domain.evaluate(m, notes, today, **BY_RULE)


def blank() -> Membership:
    return domain.blank("vip", "C-1")


def test_a_matching_rule_makes_an_automatic_member_from_today() -> None:
    m, t = rule(blank(), "Spent $1,200.00")
    assert (m.is_member, m.assigned_by.value, m.notes, m.member_since) == (True, "automatic", "Spent $1,200.00", DAY1)
    assert t is not None and (t.action, t.reason) == (Action.ENTERED, Reason.RULE_MATCHED)


def test_a_continuous_membership_keeps_its_start_while_the_explanation_follows_the_figures() -> None:
    m, _ = rule(blank(), "4 purchases")
    m, t = rule(m, "5 purchases", DAY2)
    assert (m.member_since, m.notes, t) == (DAY1, "5 purchases", None)
    m, t = rule(m, None, DAY3)
    assert (m.is_member, m.member_since, m.is_empty) == (False, None, True)
    assert t is not None and (t.action, t.reason) == (Action.EXITED, Reason.RULE_STOPPED_MATCHING)
    m, _ = rule(m, "4 purchases", DAY3)
    assert m.member_since == DAY3, "a new membership starts again"


def test_manual_add_is_sticky() -> None:
    m, t = domain.add_manually(blank(), "friend of the owner", DAY1)
    assert (m.is_member, m.assigned_by.value, m.notes) == (True, "manual", "friend of the owner")
    assert t is not None and (t.action, t.reason) == (Action.ENTERED, Reason.MANUAL_ADD)
    m, _ = rule(m, "matches too", DAY2)
    m, t = rule(m, None, DAY3)
    assert (m.is_member, m.notes, m.member_since, t) == (True, "friend of the owner", DAY1, None)


def test_adding_an_automatic_member_by_hand_keeps_its_start() -> None:
    m, _ = rule(blank(), "matches")
    m, t = domain.add_manually(m, "keep", DAY2)
    assert (m.assigned_by.value, m.member_since) == ("manual", DAY1)
    assert t is not None and t.action == Action.CHANGED
    same, t = domain.add_manually(m, "keep", DAY3)
    assert same == m and t is None


def test_removing_a_rule_based_member_is_an_exclusion_rules_never_override() -> None:
    m, _ = rule(blank(), "matches")
    m, t = domain.remove_manually(m, DAY2)
    assert (m.is_member, m.excluded, m.member_since) == (False, True, None)
    assert t is not None and (t.action, t.reason) == (Action.EXITED, Reason.MANUAL_REMOVAL)
    for notes in ("matches", None, "matches again"):
        m, t = rule(m, notes, DAY3)
        assert (m.is_member, m.excluded, t) == (False, True, None)
    again, t = domain.remove_manually(m, DAY3)
    assert (again, t) == (m, None)


def test_clearing_an_exclusion_lets_the_rule_decide_again() -> None:
    m, _ = rule(blank(), "matches")
    m, _ = domain.remove_manually(m, DAY1)
    m, t = domain.clear_exclusion(m, DAY2)
    assert (m.is_member, m.excluded, m.member_since) == (True, False, DAY2)
    assert t is not None and (t.action, t.reason) == (Action.ENTERED, Reason.EXCLUSION_CLEARED)
    with pytest.raises(NotExcluded):
        domain.clear_exclusion(m, DAY2)

    m, _ = domain.remove_manually(m, DAY2)
    m, _ = rule(m, None, DAY3)
    m, t = domain.clear_exclusion(m, DAY3)
    assert (m.is_member, m.is_empty) == (False, True)
    assert t is not None and (t.action, t.reason) == (Action.CHANGED, Reason.EXCLUSION_CLEARED)


def test_removing_a_manual_member_the_rule_matches_excludes_it_and_one_it_does_not_match_just_leaves() -> None:
    matched, _ = domain.add_manually(rule(blank(), "matches")[0], "n", DAY1)
    m, _ = domain.remove_manually(matched, DAY2)
    assert (m.is_member, m.excluded) == (False, True)
    lonely, _ = domain.add_manually(blank(), "n", DAY1)
    m, _ = domain.remove_manually(lonely, DAY2)
    assert (m.is_member, m.excluded, m.is_empty) == (False, False, True)
    with pytest.raises(NotAMember):
        domain.remove_manually(m, DAY2)


def test_a_manual_add_clears_an_exclusion() -> None:
    m, _ = domain.remove_manually(rule(blank(), "matches")[0], DAY1)
    m, t = domain.add_manually(m, "back", DAY2)
    assert (m.is_member, m.excluded, m.assigned_by.value, m.member_since) == (True, False, "manual", DAY2)
    assert t is not None and t.action == Action.ENTERED
