"""Memberships: who is in a segment, since when, by whose decision, and every entry and exit. Pure: no I/O.

A (segment, customer) pair carries three independent facts:
- ``rule_match``: the segment's rule matches the customer (kept current by every evaluation path);
- ``manual``: staff added the customer (sticky: rules never remove it);
- ``excluded``: staff removed a rule-based member (rules never bring the customer back until cleared).
The customer is a member when ``manual``, or when ``rule_match`` and not ``excluded``. ``member_since`` is
the business day the current continuous membership began; a change of who assigned it does not restart it.

``sqlgen``/``store`` apply the rule-evaluation verb (``evaluate``) set-based for backfills and sweeps with the
same meaning; an integration test holds a full recompute to the incremental result.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date
from enum import StrEnum

from shared.contracts.domain import AssignedBy

MAX_NOTES = 1000


class Reason(StrEnum):
    RULE_MATCHED = "rule_matched"
    RULE_STOPPED_MATCHING = "rule_stopped_matching"
    RULE_CHANGED = "rule_changed"
    TIME_PASSED = "time_passed"
    MANUAL_ADD = "manual_add"
    MANUAL_REMOVAL = "manual_removal"
    EXCLUSION_CLEARED = "exclusion_cleared"
    SEGMENT_DELETED = "segment_deleted"


class Action(StrEnum):
    ENTERED = "entered"
    EXITED = "exited"
    CHANGED = "changed"  # neither an entry nor an exit: a member added by hand again, an exclusion lifted


class MembershipError(Exception):
    """A manual operation that does not apply to the membership as it stands (answered 404/409)."""


class NotAMember(MembershipError):
    pass


class NotExcluded(MembershipError):
    pass


@dataclass(frozen=True, slots=True)
class Membership:
    segment_id: str
    customer_id: str
    rule_match: bool = False
    match_notes: str = ""
    manual: bool = False
    manual_notes: str = ""
    excluded: bool = False
    member_since: date | None = None

    @property
    def is_member(self) -> bool:
        return self.manual or (self.rule_match and not self.excluded)

    @property
    def assigned_by(self) -> AssignedBy:
        return AssignedBy.MANUAL if self.manual else AssignedBy.AUTOMATIC

    @property
    def notes(self) -> str:
        return self.manual_notes if self.manual else self.match_notes

    @property
    def is_empty(self) -> bool:
        """Nothing worth keeping: not matching, not manual, not excluded."""
        return not (self.rule_match or self.manual or self.excluded)

    @property
    def visible(self) -> tuple[bool, str, str, date | None] | None:
        """What the Customer Segments grid shows of this membership (None: not shown)."""
        if not self.is_member:
            return None
        return (True, self.assigned_by.value, self.notes, self.member_since)


@dataclass(frozen=True, slots=True)
class Transition:
    action: Action
    reason: Reason
    membership: Membership


def _entered_or_left(before: Membership, after: Membership, today: date) -> Membership:
    """Set ``member_since`` from the change of membership: a new membership starts today."""
    if after.is_member and not before.is_member:
        return replace(after, member_since=today)
    if not after.is_member:
        return replace(after, member_since=None)
    return after


def blank(segment_id: str, customer_id: str) -> Membership:
    return Membership(segment_id, customer_id)


def evaluate(current: Membership, notes: str | None, today: date, *, entered: Reason, left: Reason
             ) -> tuple[Membership, Transition | None]:
    """The rule was evaluated: it matches with explanation ``notes``, or not (None)."""
    if (current.rule_match == (notes is not None) and current.match_notes == (notes or "")
            and (current.is_member or current.member_since is None)):
        return current, None  # the same verdict with the same words: nothing changes (the common case)
    after = replace(current, rule_match=notes is not None, match_notes=notes or "")
    after = _entered_or_left(current, after, today)
    if after.is_member and not current.is_member:
        return after, Transition(Action.ENTERED, entered, after)
    if current.is_member and not after.is_member:
        return after, Transition(Action.EXITED, left, after)
    return after, None


def add_manually(current: Membership, notes: str, today: date) -> tuple[Membership, Transition | None]:
    """Staff add the customer: sticky, and it clears an exclusion. Re-adding only updates the note."""
    after = _entered_or_left(current, replace(current, manual=True, manual_notes=notes, excluded=False), today)
    if not current.is_member:
        return after, Transition(Action.ENTERED, Reason.MANUAL_ADD, after)
    if not current.manual or current.manual_notes != notes:
        return after, Transition(Action.CHANGED, Reason.MANUAL_ADD, after)
    return after, None


def remove_manually(current: Membership, today: date) -> tuple[Membership, Transition | None]:
    """Staff remove the customer. A customer the rule matches is excluded (rules never bring them back until
    the exclusion is cleared); a manual-only member simply leaves. Removing an excluded customer again
    changes nothing; removing a non-member raises ``NotAMember``."""
    if not current.is_member:
        if current.excluded:
            return current, None
        raise NotAMember(f"{current.customer_id} is not a member of {current.segment_id}")
    after = replace(current, manual=False, manual_notes="", excluded=current.rule_match)
    after = _entered_or_left(current, after, today)
    return after, Transition(Action.EXITED, Reason.MANUAL_REMOVAL, after)


def clear_exclusion(current: Membership, today: date) -> tuple[Membership, Transition | None]:
    """Staff lift an exclusion: the rule decides again (the customer re-enters at once if it matches)."""
    if not current.excluded:
        raise NotExcluded(f"{current.customer_id} is not excluded from {current.segment_id}")
    after = _entered_or_left(current, replace(current, excluded=False), today)
    if after.is_member:
        return after, Transition(Action.ENTERED, Reason.EXCLUSION_CLEARED, after)
    return after, Transition(Action.CHANGED, Reason.EXCLUSION_CLEARED, after)
