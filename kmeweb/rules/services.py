"""Routing rules: read, check, save, delete and reorder them (Admin › Routing rules, the API).

Functions take the session and the acting admin, flush but never commit, and raise
kmeweb.errors DomainError subclasses. Saving a rule never moves a device: the pull applies
the rules to new uploads, and "Apply rules to existing devices" (kmeweb.integration.routing)
to the devices already here. What a rule would match is kmeweb.rules.engine.preview.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kmeweb.audit import services as audit
from kmeweb.devices.services import validate_attributes
from kmeweb.directory.models import EndUser
from kmeweb.errors import Conflict, ErrorCollector, NotFound, ValidationError
from kmeweb.identifiers import classify_id
from kmeweb.ids import parse_id
from kmeweb.integration.models import Reseller
from kmeweb.profiles.models import Profile, ProfileKind
from kmeweb.profiles.services import DEFAULT_PROFILE_NAME
from kmeweb.rules import engine
from kmeweb.rules.engine import CATCH_ALL_NAME, DRAFT_KEY, RuleSpec
from kmeweb.rules.models import RoutingRule, RuleAction
from kmeweb.text import count

NAME_MAX = 100
PATTERNS_MAX = 20
PATTERN_MAX = 64
IDENTIFIERS_MAX = 5_000
#: A pattern: letters, digits, space and - _ . / # + :, with * (any text) and ? (one character).
_PATTERN = re.compile(r"^[A-Za-z0-9 _.\-/#+:*?]+$")
_SPLIT = re.compile(r"[\s,;]+")
STALE_RULE = "Someone changed this rule since you opened it. Reload the page to see it."
STALE_ORDER = (
    "Someone changed the order of the rules since you loaded the page. Reload it and reorder again."
)
#: The profile select's value for the Samsung KME Default Profile.
DEFAULT_CHOICE = "default"

_FIELDS = (
    "name",
    "reseller_ids",
    "order_patterns",
    "model_patterns",
    "identifiers",
    "imei_from",
    "imei_to",
    "action",
    "profile_id",
    "to_default",
    "end_user_id",
    "attributes",
)


def ensure_catch_all(session: Session) -> RoutingRule:
    """The catch-all rule, created (hold for approval, Default Profile) when missing."""
    rule = session.scalar(select(RoutingRule).where(RoutingRule.catch_all.is_(True)).limit(1))
    if rule is None:
        rule = RoutingRule(
            name=CATCH_ALL_NAME,
            position=0,
            catch_all=True,
            action=RuleAction.HOLD,
            to_default=True,
            reseller_ids=[],
            order_patterns=[],
            model_patterns=[],
            identifiers=[],
            attributes={},
            updated_by="kmeweb",
        )
        session.add(rule)
        session.flush()
    return rule


def list_rules(session: Session) -> list[RoutingRule]:
    """Every rule in the order they are tried, the catch-all last (created when missing)."""
    ensure_catch_all(session)
    return list(
        session.scalars(
            select(RoutingRule).order_by(
                RoutingRule.catch_all, RoutingRule.position, RoutingRule.id
            )
        )
    )


def order_of(rules: Iterable[RoutingRule]) -> list[int]:
    """The ids of the rules that can be reordered (all but the catch-all), in order: what a
    page sends back as the order it saw."""
    return [r.id for r in rules if not r.catch_all]


def get_rule_or_404(session: Session, rule_id: Any) -> RoutingRule:
    """Raises NotFound."""
    parsed = parse_id(rule_id)
    rule = session.get(RoutingRule, parsed) if parsed is not None else None
    if rule is None:
        raise NotFound("No such rule.")
    return rule


# --- reading what an admin typed -------------------------------------------------------


def _items(raw: Any) -> list[str]:
    """A list from a list, or from text with one item per line (or separated by , ; or
    spaces)."""
    if raw is None:
        return []
    if isinstance(raw, str):
        return [p for p in _SPLIT.split(raw) if p]
    if isinstance(raw, list | tuple):
        return [str(p).strip() for p in raw if str(p).strip()]
    raise ValidationError("Enter a list.")


def parse_patterns(raw: Any, what: str) -> tuple[str, ...]:
    """Order-number or model patterns (`PO-SALES-*`, `SM-T*`), kept as typed, without
    repeats. Raises ValidationError."""
    patterns = list(dict.fromkeys(_items(raw)))
    if len(patterns) > PATTERNS_MAX:
        raise ValidationError(f"At most {PATTERNS_MAX} {what} patterns.")
    for p in patterns:
        if len(p) > PATTERN_MAX:
            raise ValidationError(f"“{p[:20]}…” is longer than {PATTERN_MAX} characters.")
        if not _PATTERN.match(p):
            raise ValidationError(
                f"“{p}” is not a pattern: use letters, digits, spaces and - _ . / # + :, "
                "with * for any text and ? for one character."
            )
        if not p.strip("*?"):
            raise ValidationError(f"“{p}” matches every {what}: leave the field empty instead.")
    return tuple(patterns)


def parse_identifiers(raw: Any) -> tuple[str, ...]:
    """IMEIs, MEIDs and serial numbers, pasted (one per line, or separated by , ;) or the
    text of a CSV whose first column holds them (a header row is skipped). Raises
    ValidationError naming the first few that are not identifiers."""
    if isinstance(raw, str) and ("\n" in raw or "," in raw or ";" in raw):
        values = []
        for row in csv.reader(io.StringIO(raw), delimiter=";" if ";" in raw else ","):
            values.extend(cell.strip() for cell in row if cell.strip())
    else:
        values = _items(raw)
    out, bad = [], []
    for i, value in enumerate(values):
        found = classify_id(value)
        if found.kind == "invalid":
            if i == 0 and not any(ch.isdigit() for ch in value):
                continue  # a header ("IMEI", "Serial number")
            bad.append(f"“{value[:20]}” ({found.reason})")
        else:
            out.append(found.value)
    if bad:
        more = f" and {len(bad) - 3:,} more" if len(bad) > 3 else ""
        raise ValidationError(f"Not an IMEI, MEID or serial number: {', '.join(bad[:3])}{more}.")
    unique = tuple(dict.fromkeys(out))
    if len(unique) > IDENTIFIERS_MAX:
        raise ValidationError(
            f"At most {IDENTIFIERS_MAX:,} identifiers in one rule ({len(unique):,} given)."
        )
    return unique


def parse_imei_range(start: Any, end: Any) -> tuple[str | None, str | None]:
    """Both ends of an IMEI range (15 digits each, the first not after the last), or
    neither. Raises ValidationError (field "imei_from" or "imei_to")."""
    a, b = (str(start or "").strip(), str(end or "").strip())
    if not a and not b:
        return None, None
    for value, field in ((a, "imei_from"), (b, "imei_to")):
        if not value:
            raise ValidationError("Enter both ends of the range, or neither.", field=field)
        if not (len(value) == 15 and value.isdigit() and value.isascii()):
            raise ValidationError("An IMEI has 15 digits.", field=field)
    if a > b:
        raise ValidationError("The range ends before it starts.", field="imei_to")
    return a, b


def _reseller_ids(session: Session, raw: Any) -> tuple[int, ...]:
    values = raw if isinstance(raw, list | tuple) else _items(raw)
    ids = []
    for value in values:
        parsed = parse_id(value)
        if parsed is None:
            raise ValidationError(f"“{str(value)[:20]}” is not a reseller.")
        ids.append(parsed)
    ids = list(dict.fromkeys(ids))
    known = set(session.scalars(select(Reseller.id).where(Reseller.id.in_(ids)))) if ids else set()
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise ValidationError(
            f"Unknown reseller: {unknown[0]}. Choose resellers from the list (kmeweb learns "
            "a reseller at the first pull of its uploads)."
        )
    return tuple(ids)


def _destination(session: Session, raw_profile: Any) -> tuple[int | None, bool]:
    """(profile_id, to_default) from the profile select: "default" (or empty) is the Default
    Profile, else the id of a Samsung Knox Mobile Enrollment profile."""
    if raw_profile in (None, "", DEFAULT_CHOICE):
        return None, True
    pid = parse_id(raw_profile)
    profile = session.get(Profile, pid) if pid is not None else None
    if profile is not None and profile.kind == ProfileKind.KME_DEFAULT:
        return None, True
    if profile is None or profile.kind != ProfileKind.KME:
        raise ValidationError("Choose a Samsung Knox Mobile Enrollment profile.")
    return profile.id, False


def _end_user(session: Session, raw: Any, to_default: bool) -> int | None:
    if raw in (None, ""):
        return None
    uid = parse_id(raw)
    if uid is None or session.get(EndUser, uid) is None:
        raise ValidationError("No such user.")
    if to_default:
        raise ValidationError(
            f"The {DEFAULT_PROFILE_NAME} carries no user: choose a profile, or no user."
        )
    return uid


def _name(session: Session, raw: Any, exclude_id: int | None) -> str:
    name = " ".join(str(raw or "").split())
    if not name:
        raise ValidationError("Enter a name.")
    if len(name) > NAME_MAX:
        raise ValidationError(f"At most {NAME_MAX} characters.")
    taken = session.scalar(
        select(RoutingRule.id).where(
            func.lower(RoutingRule.name) == name.lower(),
            RoutingRule.id != (exclude_id or -1),
        )
    )
    if taken is not None:
        raise ValidationError("Another rule has this name.")
    return name


def parse_rule(
    session: Session, data: Mapping[str, Any], rule: RoutingRule | None = None
) -> RuleSpec:
    """The rule as `data` describes it (a form or the API's body), checked, as the engine
    reads it: `rule`'s key when it edits that rule, else DRAFT_KEY. Fields: name,
    reseller_ids, order_patterns, model_patterns, identifiers, imei_from, imei_to, action
    ("approve" or "hold"), profile_id ("default" or empty: the Default Profile), end_user_id,
    attributes ({name: value}). The catch-all takes no conditions.
    Raises ValidationError (one per field, ValidationErrors for several)."""
    catch_all = bool(rule and rule.catch_all)
    errors = ErrorCollector()

    def check(field: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except ValidationError as err:
            for e in err.each():
                errors.add(e.message, e.field or field)
            return None

    name = check("name", _name, session, data.get("name"), rule.id if rule else None)
    conditions: dict[str, Any] = {}
    if not catch_all:
        conditions = {
            "reseller_ids": check("reseller_ids", _reseller_ids, session, data.get("reseller_ids")),
            "order_patterns": check(
                "order_patterns", parse_patterns, data.get("order_patterns"), "order number"
            ),
            "model_patterns": check(
                "model_patterns", parse_patterns, data.get("model_patterns"), "model"
            ),
            "identifiers": check("identifiers", parse_identifiers, data.get("identifiers")),
        }
        imei = check("imei_from", parse_imei_range, data.get("imei_from"), data.get("imei_to"))
        conditions["imei_from"], conditions["imei_to"] = imei or (None, None)
    action = data.get("action") or RuleAction.HOLD
    if action not in RuleAction.labels():
        errors.add("Choose what happens to the devices.", "action")
    destination = check("profile_id", _destination, session, data.get("profile_id"))
    profile_id, to_default = destination or (None, True)
    end_user_id = check("end_user_id", _end_user, session, data.get("end_user_id"), to_default)
    attributes = check("attributes", validate_attributes, data.get("attributes") or {})
    spec = RuleSpec(
        key=rule.id if rule else DRAFT_KEY,
        name=name or "",
        catch_all=catch_all,
        version=rule.version if rule else 1,
        reseller_ids=conditions.get("reseller_ids") or (),
        order_patterns=conditions.get("order_patterns") or (),
        model_patterns=conditions.get("model_patterns") or (),
        identifiers=conditions.get("identifiers") or (),
        imei_from=conditions.get("imei_from"),
        imei_to=conditions.get("imei_to"),
        action=action,
        profile_id=profile_id,
        to_default=to_default,
        end_user_id=end_user_id,
        attributes=tuple(sorted((attributes or {}).items())),
    )
    if not catch_all and not errors.errors and not spec.has_conditions:
        errors.add(
            "Give the rule at least one condition: the last rule already takes everything else.",
            "conditions",
        )
    errors.raise_any()
    return spec


# --- saving ------------------------------------------------------------------------------


def _snapshot(rule: RoutingRule) -> dict[str, Any]:
    return {
        "name": rule.name,
        "reseller_ids": list(rule.reseller_ids or []),
        "order_patterns": list(rule.order_patterns or []),
        "model_patterns": list(rule.model_patterns or []),
        "identifiers": len(rule.identifiers or []),
        "imei_from": rule.imei_from,
        "imei_to": rule.imei_to,
        "action": rule.action,
        "profile_id": rule.profile_id,
        "to_default": rule.to_default,
        "end_user_id": rule.end_user_id,
        "attributes": dict(rule.attributes or {}),
    }


def _write(rule: RoutingRule, spec: RuleSpec, actor: Any) -> None:
    rule.name = spec.name
    rule.reseller_ids = list(spec.reseller_ids)
    rule.order_patterns = list(spec.order_patterns)
    rule.model_patterns = list(spec.model_patterns)
    rule.identifiers = list(spec.identifiers)
    rule.imei_from, rule.imei_to = spec.imei_from, spec.imei_to
    rule.action = spec.action
    rule.profile_id, rule.to_default = spec.profile_id, spec.to_default
    rule.end_user_id = spec.end_user_id
    rule.attributes = dict(spec.attributes)
    rule.updated_by = _actor_name(actor)


def _actor_name(actor: Any) -> str:
    return actor if isinstance(actor, str) else getattr(actor, "email", str(actor))


def create_rule(session: Session, data: Mapping[str, Any], actor: Any) -> RoutingRule:
    """Add a rule just before the catch-all. Records audit "rule.create". Flushes. Moves no
    device. Raises ValidationError."""
    ensure_catch_all(session)
    spec = parse_rule(session, data)
    last = session.scalar(
        select(func.max(RoutingRule.position)).where(RoutingRule.catch_all.is_(False))
    )
    rule = RoutingRule(position=(last or 0) + 1, catch_all=False, version=1)
    _write(rule, spec, actor)
    session.add(rule)
    session.flush()
    audit.record(session, actor, "rule.create", "rule", rule.id, _snapshot(rule))
    return rule


def check_version(rule: RoutingRule, expected_version: Any) -> None:
    """Conflict unless the rule is still at the version the admin's page showed (None:
    any)."""
    if expected_version in (None, ""):
        return
    if str(rule.version) != str(expected_version).strip():
        raise Conflict(STALE_RULE, field="version")


def update_rule(
    session: Session,
    rule_id: Any,
    data: Mapping[str, Any],
    actor: Any,
    expected_version: Any = None,
) -> RoutingRule:
    """Save an edit: the rule's version grows by one (devices it placed keep the version that
    placed them). Records audit "rule.update" with what changed. Flushes. Moves no device.
    Raises NotFound, Conflict (stale version), ValidationError."""
    rule = get_rule_or_404(session, rule_id)
    check_version(rule, expected_version)
    spec = parse_rule(session, data, rule)
    old = _snapshot(rule)
    _write(rule, spec, actor)
    new = _snapshot(rule)
    changed = {k: [old[k], new[k]] for k in _FIELDS if old.get(k) != new.get(k)}
    if not changed:
        return rule
    rule.version += 1
    session.flush()
    audit.record(
        session,
        actor,
        "rule.update",
        "rule",
        rule.id,
        {"rule": rule.name, "version": rule.version, "changed": changed},
    )
    return rule


def delete_rule(session: Session, rule_id: Any, actor: Any, expected_version: Any = None) -> str:
    """Delete a rule (never the catch-all). Devices it placed stay where they are and no
    longer name a rule. Records audit "rule.delete". Flushes. Returns its name.
    Raises NotFound, Conflict (the catch-all, or a stale version)."""
    rule = get_rule_or_404(session, rule_id)
    if rule.catch_all:
        raise Conflict("The last rule says what happens to everything else: it stays.")
    check_version(rule, expected_version)
    name, details = rule.name, _snapshot(rule)
    session.delete(rule)
    session.flush()
    audit.record(session, actor, "rule.delete", "rule", rule_id, details)
    return name


def _expected_order(raw: Any) -> list[int] | None:
    if raw is None:
        return None
    values = raw if isinstance(raw, list | tuple) else _items(raw)
    ids = [parse_id(v) for v in values]
    return [i for i in ids if i is not None]


def set_order(
    session: Session, order: Sequence[Any], actor: Any, expected_order: Any = None
) -> list[RoutingRule]:
    """Put the rules (all but the catch-all, which stays last) in `order`. `expected_order`
    is the order the admin's page showed (ids, or text of ids): another order now means
    someone reordered meanwhile (Conflict, nothing changes). Records audit "rule.order".
    Flushes. Raises Conflict, ValidationError (field "order": not each rule once)."""
    rules = list_rules(session)
    current = order_of(rules)
    expected = _expected_order(expected_order)
    if expected is not None and expected != current:
        raise Conflict(STALE_ORDER, field="order")
    wanted = _expected_order(list(order)) or []
    if sorted(wanted) != sorted(current) or len(set(wanted)) != len(wanted):
        raise ValidationError("Give each rule but the last one once.", field="order")
    if wanted == current:
        return rules
    by_id = {r.id: r for r in rules}
    for position, rule_id in enumerate(wanted, start=1):
        by_id[rule_id].position = position
    session.flush()
    names = [by_id[i].name for i in wanted]
    audit.record(
        session,
        actor,
        "rule.order",
        "rule",
        None,
        {"order": names, "old_order": [by_id[i].name for i in current]},
    )
    return list_rules(session)


def move_rule(
    session: Session, rule_id: Any, direction: str, actor: Any, expected_order: Any = None
) -> list[RoutingRule]:
    """Move one rule a place up or down (`direction` "up" or "down"): set_order with the
    neighbour swapped. Raises NotFound, Conflict (the catch-all; a stale order),
    ValidationError (field "direction")."""
    rule = get_rule_or_404(session, rule_id)
    if rule.catch_all:
        raise Conflict("The last rule stays last: it takes everything else.")
    if direction not in ("up", "down"):
        raise ValidationError("Move a rule up or down.", field="direction")
    order = order_of(list_rules(session))
    i = order.index(rule.id)
    j = i - 1 if direction == "up" else i + 1
    if 0 <= j < len(order):
        order[i], order[j] = order[j], order[i]
    return set_order(session, order, actor, expected_order)


# --- what the pages show -----------------------------------------------------------------


@dataclass(frozen=True)
class RuleView:
    """A rule as the list shows it: its conditions and actions in words, and what is wrong
    with it (its profile deleted)."""

    rule: RoutingRule
    conditions: list[str]
    destination: str
    broken: str | None


def describe(session: Session, rules: Sequence[RoutingRule]) -> list[RuleView]:
    """Words for each rule's conditions and destination, with the broken ones named."""
    reseller_ids = {i for r in rules for i in (r.reseller_ids or [])}
    resellers = (
        dict(
            session.execute(
                select(Reseller.id, Reseller.name).where(Reseller.id.in_(reseller_ids))
            ).all()
        )
        if reseller_ids
        else {}
    )
    specs = [RuleSpec.of(r) for r in rules]
    dests = engine.destinations(session, specs) if specs else {}
    out = []
    for rule, spec in zip(rules, specs, strict=True):
        words = []
        if spec.reseller_ids:
            names = [resellers.get(i, f"#{i}") for i in spec.reseller_ids]
            words.append("Reseller is " + " or ".join(names))
        if spec.order_patterns:
            words.append("Order number matches " + " or ".join(spec.order_patterns))
        if spec.model_patterns:
            words.append("Model matches " + " or ".join(spec.model_patterns))
        if spec.identifiers:
            words.append(
                f"IMEI or serial number in a list of {count(len(spec.identifiers), 'device')}"
            )
        if spec.imei_from:
            words.append(f"IMEI from {spec.imei_from} to {spec.imei_to}")
        if spec.catch_all:
            words.append("Every device no rule above matches")
        dest = dests[spec.key]
        out.append(RuleView(rule, words, dest.name, dest.note))
    return out


def rules_naming_reseller(session: Session, reseller_id: int) -> list[RoutingRule]:
    """The rules with a condition on this reseller, in order (for its page)."""
    return [r for r in list_rules(session) if reseller_id in (r.reseller_ids or [])]


def rules_by_reseller(
    session: Session, reseller_ids: Iterable[int]
) -> dict[int, list[RoutingRule]]:
    """{reseller id: the rules naming it, in order} for the resellers a page shows."""
    wanted = set(reseller_ids)
    out: dict[int, list[RoutingRule]] = {i: [] for i in wanted}
    for rule in list_rules(session):
        for rid in rule.reseller_ids or []:
            if rid in wanted:
                out[rid].append(rule)
    return out
