"""The rule language: what validates, the canonical form that is stored and versioned, and error messages that
name the path of each problem."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from services.segment_engine.compiler import compile_rule
from services.segment_engine.config import DEFAULT_SEGMENTS_FILE
from services.segment_engine.handlers import InvalidDocument, load_document_file, parse_document
from services.segment_engine.rules import RuleError, canonical


def problems(doc: object) -> list[tuple[str, str]]:
    with pytest.raises(RuleError) as caught:
        canonical(doc)
    return caught.value.problems


def paths(doc: object) -> list[str]:
    return [p for p, _ in problems(doc)]


def test_spec_examples_validate_and_canonicalise() -> None:
    text = """
- purchase_frequency: {min_purchases: 4, window_days: 30}
- purchase_frequency: {cadence: weekly, window_days: 90}
- total_spend: {min: "1000.00", window_days: 365}
- signup: {within_days: 30}
- signup: {before: 2025-01-01}
- product_categories: {any_of: [Footwear], window_days: 180}
- location: {most_frequent_store_in: [S-001], window_days: 365}
- loyalty_tier: {in: [Gold, Platinum]}
- frequency_drop: {recent_days: 60, baseline_days: 180, max_ratio: 0.5, min_baseline_purchases: 3}
- all: [{signup: {within_days: 30}}, {not: {loyalty_tier: {in: [Gold]}}}, {any: [{total_spend: {max: 5}}]}]
"""
    docs = yaml.safe_load(text)
    forms = [canonical(d) for d in docs]
    assert forms[2] == {"total_spend": {"min": "1000.00", "window_days": 365}}
    assert forms[4] == {"signup": {"before": "2025-01-01"}}
    assert forms[8] == {"frequency_drop": {"recent_days": 60, "baseline_days": 180, "max_ratio": "0.5",
                                           "min_baseline_purchases": 3}}
    assert forms[9]["all"][2] == {"any": [{"total_spend": {"max": "5.00"}}]}
    for form in forms:
        assert canonical(form) == form, "the canonical form is a fixed point"
        compile_rule(form)


def test_equivalent_spellings_have_one_canonical_form() -> None:
    assert canonical({"total_spend": {"min": 1000}}) == canonical({"total_spend": {"min": "1000.00"}})
    assert canonical({"frequency_drop": {"recent_days": 60, "baseline_days": 180, "max_ratio": "0.50"}}) == \
        canonical({"frequency_drop": {"recent_days": 60, "baseline_days": 180, "max_ratio": 0.5}})
    assert canonical({"loyalty_tier": {"in": "Gold"}}) == {"loyalty_tier": {"in": ["Gold"]}}


@pytest.mark.parametrize(("doc", "where", "says"), [
    ({"spend": {}}, "rule.spend", "unknown criterion 'spend'"),
    ({"all": [{"total_spend": {"min": "abc"}}]}, "rule.all[0].total_spend.min", "amount"),
    ({"all": [{"signup": {"within_days": 30}}, {"any": [{"total_spend": {"min": "1.001"}}]}]},
     "rule.all[1].any[0].total_spend.min", "at most 2 decimal places"),
    ({"purchase_frequency": {"window_days": 30}}, "rule.purchase_frequency", "min_purchases"),
    ({"purchase_frequency": {"cadence": "hourly", "window_days": 30}}, "rule.purchase_frequency.cadence",
     "weekly"),
    ({"purchase_frequency": {"cadence": "weekly"}}, "rule.purchase_frequency.window_days", "required"),
    ({"purchase_frequency": {"min_purchases": 4, "window_days": 0}}, "rule.purchase_frequency.window_days",
     "between 1 and"),
    ({"purchase_frequency": {"min_purchases": 5, "max_purchases": 2}}, "rule.purchase_frequency.max_purchases",
     "at least min_purchases"),
    ({"purchase_frequency": {"min_purchases": True}}, "rule.purchase_frequency.min_purchases", "whole number"),
    ({"total_spend": {"min": -5}}, "rule.total_spend.min", "between 0"),
    ({"total_spend": {"window_days": 30}}, "rule.total_spend", "give min, max or both"),
    ({"signup": {"before": "yesterday"}}, "rule.signup.before", "date"),
    ({"product_categories": {"any_of": []}}, "rule.product_categories.any_of", "non-empty list"),
    ({"product_categories": {"all_of": ["A", 3]}}, "rule.product_categories.all_of[1]", "name"),
    ({"location": {"window_days": 30}}, "rule.location.most_frequent_store_in", "required"),
    ({"loyalty_tier": {"in": ["Gold"], "not_in": ["Bronze"]}}, "rule.loyalty_tier.not_in", "unknown setting"),
    ({"frequency_drop": {"recent_days": 60, "baseline_days": 180, "max_ratio": 2}},
     "rule.frequency_drop.max_ratio", "between 0 and 1"),
    ({"frequency_drop": {"recent_days": 60, "baseline_days": 180}}, "rule.frequency_drop.max_ratio", "required"),
    ({"not": []}, "rule.not", "mapping"),
    ({"any": []}, "rule.any", "non-empty list"),
    ({}, "rule", "empty rule"),
    ("total_spend", "rule", "mapping"),
])
def test_invalid_rules_are_refused_naming_the_path(doc: object, where: str, says: str) -> None:
    found = problems(doc)
    assert where in [p for p, _ in found], found
    assert says in dict(found)[where]


def test_every_problem_is_reported_at_once() -> None:
    assert paths({"all": [{"total_spend": {"min": "x"}}, {"signup": {}}, {"nope": 1}]}) == [
        "rule.all[0].total_spend.min", "rule.all[1].signup", "rule.all[2].nope"]


def test_depth_is_bounded() -> None:
    doc: dict = {"signup": {"within_days": 1}}
    for _ in range(20):
        doc = {"not": doc}
    assert any("nest" in m for _, m in problems(doc))


def test_the_shipped_defaults_are_valid_and_complete() -> None:
    definitions = load_document_file(DEFAULT_SEGMENTS_FILE)
    assert [d.name for d in definitions] == ["High Value", "Frequent Buyer", "New Customer", "At-Risk", "VIP"]
    assert {d.segment_id for d in definitions} == {"high-value", "frequent-buyer", "new-customer", "at-risk", "vip"}
    for d in definitions:
        compile_rule(d.rule)


def test_documents_of_segments_report_paths_across_segments(tmp_path: Path) -> None:
    with pytest.raises(InvalidDocument) as caught:
        parse_document({"segments": [
            {"segment_id": "ok", "name": "OK", "rule": {"signup": {"within_days": 3}}},
            {"segment_id": "sweep", "name": "", "rule": {"signup": {"within_days": "x"}}},
            {"segment_id": "ok", "name": "Again", "rule": {"signup": {"within_days": 3}}, "colour": "red"},
        ]})
    assert [p for p, _ in caught.value.problems] == [
        "segments[1].segment_id", "segments[1].name", "segments[1].rule.signup.within_days",
        "segments[2].colour", "segments[2].segment_id"]
