"""The words Admin › Routing rules shows for a rule's conditions and destination."""

from __future__ import annotations

from kmeweb.rules import services as rules
from tests.factories import make_default_profile, make_profile, make_reseller


def test_a_rule_is_described_with_its_resellers_names_and_its_profile(session):
    make_default_profile(session)
    reseller = make_reseller(session, name="Acme Phones")
    profile = make_profile(session, name="Sales")
    rule = rules.create_rule(
        session,
        {
            "name": "Acme's tablets",
            "reseller_ids": [reseller.id],
            "model_patterns": "SM-T*",
            "action": "approve",
            "profile_id": str(profile.id),
        },
        "admin@example.com",
    )
    session.commit()
    views = {v.rule.name: v for v in rules.describe(session, rules.list_rules(session))}
    assert views[rule.name].conditions == ["Reseller is Acme Phones", "Model matches SM-T*"]
    assert (views[rule.name].destination, views[rule.name].broken) == ("Sales", None)
    assert views["Everything else"].conditions == ["Every device no rule above matches"]
