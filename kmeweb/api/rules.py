"""Routing rules: the ordered rules that say what happens to the devices of a new reseller
upload (approve them at once or hold them for approval, and in which profile), for scripts,
on the services of Admin › Routing rules (kmeweb.rules.services).

Rules are tried in order and the first whose conditions all hold wins; the last rule, the
catch-all, takes every device no other rule matches and has no conditions. Saving a rule moves
no device: the next pull applies the rules to new uploads, and POST /rules/apply to the devices
already here (after GET /rules/apply has shown what it would change). POST /rules/preview says
what a rule would match before it is saved.

Every answer about one rule carries its `ETag`; a PATCH or DELETE sent with `If-Match` is
refused with 412 when the rule changed since (kmeweb.api.etag). PUT /rules/order takes the
order the caller saw (`expected_order`) and is refused with 409 when someone reordered
meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from flask import url_for
from pydantic import BaseModel, ConfigDict, Field

from kmeweb.api.etag import etag_of, expected_version
from kmeweb.api.routing import api, caller
from kmeweb.api.schemas import Accepted
from kmeweb.apitokens.models import Scope
from kmeweb.errors import Conflict, ValidationError, ValidationErrors
from kmeweb.extensions import db
from kmeweb.integration import routing
from kmeweb.profiles.services import DEFAULT_PROFILE_NAME, ensure_default_profile
from kmeweb.rules import engine, services
from kmeweb.rules.models import RoutingRule, RuleAction

TAG = "rules"
READ, WRITE = Scope.RULES_READ, Scope.RULES_WRITE
#: The service's fields that are conditions: in a body they sit under `conditions`.
CONDITION_FIELDS = (
    "reseller_ids",
    "order_patterns",
    "model_patterns",
    "identifiers",
    "imei_from",
    "imei_to",
)
PATTERN_RULE = (
    f"At most {services.PATTERNS_MAX} patterns of at most {services.PATTERN_MAX} characters: "
    "letters, digits, spaces and - _ . / # + :, with `*` for any text and `?` for one "
    "character (any case)"
)
STALE_ORDER = (
    "The order of the rules changed since you read it (expected_order): GET /rules again, "
    "then send the order you want."
)
BROKEN_NEEDS_PROFILE = (
    "The profile this rule sent devices to was deleted: send profile_id (null: the "
    f"{DEFAULT_PROFILE_NAME})."
)
CATCH_ALL_NO_CONDITIONS = (
    "The last rule takes every device no rule above matches: it has no conditions."
)


# --- Answers --------------------------------------------------------------------------------


class RuleConditionsOut(BaseModel):
    """What a device must match, all of it (within one condition, any value may match)."""

    reseller_ids: list[int] = Field(description="The upload's reseller is one of these")
    order_patterns: list[str] = Field(description="The upload's order number matches one")
    model_patterns: list[str] = Field(description="The device's model matches one")
    identifiers_count: int = Field(
        description="How many IMEIs, MEIDs or serial numbers the rule lists (the device's is "
        "one of them); GET /rules/{id} lists them"
    )
    imei_from: str | None = Field(description="The IMEI is in this range (15 digits each)")
    imei_to: str | None


class RuleConditionsDetailOut(RuleConditionsOut):
    identifiers: list[str] = Field(description="The IMEIs, MEIDs and serial numbers listed")


class RuleOut(BaseModel):
    """A routing rule as Admin › Routing rules lists it."""

    id: int
    name: str
    position: int = Field(
        description="Its place in the order the rules are tried, from 1; the catch-all is last"
    )
    catch_all: bool = Field(
        description="The last rule: every device no rule above matches (no conditions; it "
        "cannot be moved or deleted)"
    )
    version: int = Field(description='Grows with each change; also the ETag: "<id>-<version>"')
    conditions: RuleConditionsOut
    summary: list[str] = Field(description="The conditions in words, as the console lists them")
    action: RuleAction = Field(
        description="approve: the devices are approved at once; hold: they wait for an "
        "admin's Approve All Devices"
    )
    profile_id: int | None = Field(
        description=f"The Samsung KME profile the devices go to; null: the {DEFAULT_PROFILE_NAME}"
        " (or, with `broken`, a profile that was deleted)"
    )
    destination: str = Field(description="The name of the profile the devices go to now")
    broken: str | None = Field(
        description="Why the rule cannot be followed (its profile was deleted: its devices "
        f"wait in the {DEFAULT_PROFILE_NAME}); null: it can"
    )
    end_user_id: int | None = Field(description="The Associated User the devices get")
    attributes: dict[str, Any] = Field(description="Custom attributes the devices get")
    created_at: datetime
    updated_at: datetime
    updated_by: str | None
    url: str

    @classmethod
    def of(cls, view: services.RuleView, position: int, detail: bool = False) -> RuleOut:
        rule = view.rule
        values = {name: getattr(rule, name) for name in CONDITION_FIELDS}
        values["identifiers_count"] = len(rule.identifiers or [])
        out = RuleDetailOut if detail else RuleOut
        return out(
            id=rule.id,
            name=rule.name,
            position=position,
            catch_all=rule.catch_all,
            version=rule.version,
            conditions=(RuleConditionsDetailOut if detail else RuleConditionsOut)(**values),
            summary=view.conditions,
            action=rule.action,
            profile_id=None if rule.to_default else rule.profile_id,
            destination=view.destination,
            broken=view.broken,
            end_user_id=rule.end_user_id,
            attributes=dict(rule.attributes or {}),
            created_at=rule.created_at,
            updated_at=rule.updated_at,
            updated_by=rule.updated_by,
            url=url_for("api.get_rule", rule_id=rule.id),
        )


class RuleDetailOut(RuleOut):
    """One routing rule, with every identifier it lists."""

    conditions: RuleConditionsDetailOut


class RuleList(BaseModel):
    items: list[RuleOut] = Field(description="Every rule in the order they are tried")
    order: list[int] = Field(
        description="The ids of the rules that can be reordered (all but the catch-all), in "
        "order: PUT /rules/order's `expected_order`"
    )


class RuleMove(BaseModel):
    from_profile: str = Field(description="The profile the devices are in now")
    devices: int


class RulePreviewOut(BaseModel):
    """What the rule would match among the devices here now, in its place among the rules
    (the rules above it keep the devices they match). Nothing is saved."""

    rule: str = Field(description="The rule's name")
    pending: int = Field(description="Devices waiting for approval it would route")
    approved: int = Field(description="Approved devices it matches")
    total: int = Field(description="pending + approved")
    destination: str = Field(description="Where its devices would go")
    broken: str | None = Field(description="Why the rule could not be followed, if so")
    approves: bool = Field(description="Pending devices would be approved at once")
    moves: list[RuleMove] = Field(
        description="Approved devices that Apply rules would move, by the profile they are in "
        "now (largest first)"
    )
    moving: int = Field(description="The sum of `moves`")
    already_there: int = Field(description="Approved devices that would stay where they are")
    sample: list[str] = Field(
        description=f"IMEIs (or serial numbers) of the first {engine.SAMPLE_SIZE} it matches"
    )

    @classmethod
    def of(cls, preview: engine.Preview) -> RulePreviewOut:
        return cls(
            rule=preview.rule,
            pending=preview.pending,
            approved=preview.approved,
            total=preview.total,
            destination=preview.destination,
            broken=preview.note,
            approves=preview.approves,
            moves=[RuleMove(from_profile=name, devices=n) for name, n in preview.moves],
            moving=preview.moving,
            already_there=preview.already_there,
            sample=preview.sample,
        )


class RulePlanLine(BaseModel):
    """What Apply rules would do with the devices one rule matches (the first that matches)."""

    rule_id: int | None = Field(description="null: the catch-all, not saved yet")
    rule: str
    destination: str
    broken: str | None
    approve: int = Field(description="Pending devices it would approve into `destination`")
    hold: int = Field(description="Pending devices that would stay pending (held by the rule)")
    wait: int = Field(
        description="Pending devices the rule would approve at once that wait with their upload: "
        "another rule holds some of the upload's devices, and KME approves whole uploads"
    )
    move: int = Field(description="Approved devices it would move into `destination`")
    stay: int = Field(
        description="Approved devices that stay: already there, or matched by the catch-all "
        "or a broken rule (which never move a device an admin placed)"
    )


class RulePlanOut(BaseModel):
    """What POST /rules/apply would do now, rule by rule."""

    lines: list[RulePlanLine]
    changes: int = Field(
        description="Devices whose place would change (approved or moved): POST /rules/apply's "
        "`expected_changes`"
    )

    @classmethod
    def of(cls, plan: engine.Plan) -> RulePlanOut:
        lines = [
            RulePlanLine(
                rule_id=line.rule_key if line.rule_key > 0 else None,
                rule=line.rule,
                destination=line.destination,
                broken=line.note,
                approve=line.approve,
                hold=line.hold,
                wait=line.wait,
                move=line.move,
                stay=line.stay,
            )
            for line in plan.lines
        ]
        return cls(lines=lines, changes=plan.changes)


# --- Requests -------------------------------------------------------------------------------


class RuleConditionsIn(BaseModel):
    """A rule's conditions: every one given must hold (within one, any value may match). In a
    PATCH, a condition left out stays as it is; `[]` (null for the IMEI range) clears it."""

    model_config = ConfigDict(extra="forbid")

    reseller_ids: list[int] = Field(
        default_factory=list, description="The upload's reseller is one of these (GET /resellers)"
    )
    order_patterns: list[str] = Field(
        default_factory=list,
        description=f"The upload's order number matches one, e.g. `PO-SALES-*`. {PATTERN_RULE}",
    )
    model_patterns: list[str] = Field(
        default_factory=list,
        description=f"The device's model matches one, e.g. `SM-T*`. {PATTERN_RULE}",
    )
    identifiers: list[str] = Field(
        default_factory=list,
        description="The device's IMEI, MEID or serial number is one of these (at most "
        f"{services.IDENTIFIERS_MAX:,})",
    )
    imei_from: str | None = Field(
        None, description="The IMEI is in this range: both ends (15 digits each) or neither"
    )
    imei_to: str | None = None


ACTION_HELP = "approve: approve the devices at once; hold: they wait for approval"
PROFILE_HELP = (
    f"A Samsung Knox Mobile Enrollment profile the devices go to; null: the {DEFAULT_PROFILE_NAME}"
)
USER_HELP = "The Associated User the devices get (a KME profile only); null: none"
ATTRIBUTES_HELP = (
    "Custom attributes the devices get (name: text, number or yes/no); an empty value is dropped"
)
NAME_HELP = f"Unique among the rules, whatever its case; at most {services.NAME_MAX} characters"


class RuleIn(BaseModel):
    """A new rule, added just before the catch-all. At least one condition."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description=NAME_HELP)
    conditions: RuleConditionsIn
    action: RuleAction = Field(RuleAction.HOLD, description=ACTION_HELP)
    profile_id: int | None = Field(None, description=PROFILE_HELP)
    end_user_id: int | None = Field(None, description=USER_HELP)
    attributes: dict[str, str | int | float | bool | None] = Field(
        default_factory=dict, description=ATTRIBUTES_HELP
    )

    def changes(self) -> dict[str, Any]:
        return _flat(self.model_dump())


class RulePatch(BaseModel):
    """The fields to change; absent ones (and a null name, action, conditions or attributes)
    stay. The catch-all takes no conditions."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, description=NAME_HELP)
    conditions: RuleConditionsIn | None = Field(
        None, description="The conditions to change; those left out stay"
    )
    action: RuleAction | None = Field(None, description=ACTION_HELP)
    profile_id: int | None = Field(None, description=PROFILE_HELP + "; absent: stays")
    end_user_id: int | None = Field(None, description=USER_HELP + "; absent: stays")
    attributes: dict[str, str | int | float | bool | None] | None = Field(
        None, description=ATTRIBUTES_HELP + "; replaces them all ({} removes them)"
    )

    def changes(self) -> dict[str, Any]:
        sent = self.model_dump(exclude_unset=True, exclude={"conditions"})
        kept = {k: v for k, v in sent.items() if v is not None or k in NULLABLE}
        if self.conditions is not None:
            kept["conditions"] = self.conditions.model_dump(exclude_unset=True)
        return _flat(kept)


#: The fields whose null means something (the Default Profile, no user).
NULLABLE = ("profile_id", "end_user_id")


class RulePreviewIn(RulePatch):
    """A rule as POST /rules would add it (`rule_id` absent), or the PATCH of a saved rule
    (`rule_id`: its fields not sent stay as saved)."""

    rule_id: int | None = Field(None, description="The saved rule this edits; absent: a new rule")


class RuleOrderIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    order: list[int] = Field(
        description="Every rule but the catch-all, once each, in the order they are to be tried"
    )
    expected_order: list[int] | None = Field(
        None,
        description="The order you saw (GET /rules's `order`): if the rules are in another "
        "order now, nothing changes and the answer is 409; null: whatever the order is",
    )


class RuleApplyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    expected_changes: int = Field(
        ge=0,
        description="The `changes` of GET /rules/apply you mean to apply: if another number "
        "of devices would change now, nothing is done and the answer is 409 count_mismatch",
    )


def _flat(body: Mapping[str, Any]) -> dict[str, Any]:
    """A body as the services read a rule: the conditions beside the other fields."""
    data = {k: v for k, v in body.items() if k != "conditions"}
    return data | dict(body.get("conditions") or {})


def _stored(rule: RoutingRule) -> dict[str, Any]:
    """A saved rule as the services read it: what a PATCH changes."""
    data: dict[str, Any] = {name: getattr(rule, name) for name in CONDITION_FIELDS}
    return data | {
        "name": rule.name,
        "action": rule.action,
        "profile_id": None if rule.to_default else rule.profile_id,
        "end_user_id": rule.end_user_id,
        "attributes": dict(rule.attributes or {}),
    }


def _edit(rule: RoutingRule, changes: Mapping[str, Any]) -> dict[str, Any]:
    """`rule` with `changes` made, as the services read it. Raises ValidationError: conditions
    for the catch-all, or no profile for a rule whose profile was deleted."""
    if rule.catch_all and any(changes.get(f) for f in CONDITION_FIELDS):
        raise ValidationError(CATCH_ALL_NO_CONDITIONS, field="conditions")
    if not rule.to_default and rule.profile_id is None and "profile_id" not in changes:
        raise ValidationError(BROKEN_NEEDS_PROFILE, field="profile_id")
    return _stored(rule) | dict(changes)


@contextmanager
def body_fields() -> Iterator[None]:
    """A service's refusal naming the body's fields: a condition's under `conditions.`."""
    try:
        yield
    except ValidationError as err:
        errors = [
            ValidationError(e.message, f"conditions.{e.field}")
            if e.field in CONDITION_FIELDS
            else ValidationError(e.message, e.field)
            for e in err.each()
        ]
        raise (errors[0] if len(errors) == 1 else ValidationErrors(errors)) from err


# --- Helpers --------------------------------------------------------------------------------


def _ready() -> list[RoutingRule]:
    """Every rule in order, with the catch-all and the Samsung KME Default Profile (where
    rules send devices by default) made when missing, as the console's page makes them."""
    ensure_default_profile(db.session)
    rules = services.list_rules(db.session)
    db.session.commit()
    return rules


def _listed(rules: Sequence[RoutingRule]) -> RuleList:
    views = services.describe(db.session, rules)
    items = [RuleOut.of(view, i) for i, view in enumerate(views, start=1)]
    return RuleList(items=items, order=services.order_of(rules))


def _answer(rule_id: int, status: int = 200, headers: Mapping[str, str] | None = None):
    """One rule's answer (RuleDetailOut), with its ETag."""
    rules = _ready()
    position = next(i for i, r in enumerate(rules, start=1) if r.id == rule_id)
    rule = rules[position - 1]
    view = services.describe(db.session, [rule])[0]
    out = RuleOut.of(view, position, detail=True)
    return out, status, {"ETag": etag_of(rule), **(headers or {})}


# --- Routes ---------------------------------------------------------------------------------

ONE = {200: RuleDetailOut, 404: None}


@api.get("/rules", scope=READ, tag=TAG, answers={200: RuleList})
def list_rules() -> RuleList:
    """Every routing rule in the order they are tried, the catch-all last

    One answer, not paged: the order is the point. A device of a new upload goes where the
    first rule whose conditions all hold says (`destination`); `order` is what to send as
    PUT /rules/order's `expected_order`.
    """
    return _listed(_ready())


@api.get("/rules/<int:rule_id>", scope=READ, tag=TAG, answers=ONE)
def get_rule(rule_id: int):
    """One rule, with every identifier it lists and its ETag"""
    services.get_rule_or_404(db.session, rule_id)
    return _answer(rule_id)


@api.post("/rules", scope=WRITE, tag=TAG, body=RuleIn, answers={201: RuleDetailOut})
def create_rule(json: RuleIn):
    """Add a rule, just before the catch-all

    It moves no device: the next pull routes new uploads by it, POST /rules/apply the devices
    already here. Refusals name the body's field (`conditions.order_patterns`, ...).
    """
    _ready()
    with body_fields():
        rule = services.create_rule(db.session, json.changes(), caller())
    db.session.commit()
    return _answer(rule.id, 201, {"Location": url_for("api.get_rule", rule_id=rule.id)})


@api.patch(
    "/rules/<int:rule_id>",
    scope=WRITE,
    tag=TAG,
    body=RulePatch,
    answers={200: RuleDetailOut, 404: None, 409: None, 412: None},
)
def update_rule(rule_id: int, json: RulePatch):
    """Change a rule

    The fields sent change, the others stay (If-Match honoured: 412 when the rule changed
    since you read it). Its `version` grows by one; it moves no device (devices it placed keep
    the version that placed them).
    """
    rule = services.get_rule_or_404(db.session, rule_id)
    version = expected_version(rule, "rule")
    with body_fields():
        data = _edit(rule, json.changes())
        services.update_rule(db.session, rule_id, data, caller(), version)
    db.session.commit()
    return _answer(rule_id)


@api.delete(
    "/rules/<int:rule_id>",
    scope=WRITE,
    tag=TAG,
    answers={204: None, 404: None, 409: None, 412: None},
)
def delete_rule(rule_id: int):
    """Delete a rule

    If-Match honoured. Devices it placed stay where they are. The catch-all stays (409).
    """
    rule = services.get_rule_or_404(db.session, rule_id)
    version = expected_version(rule, "rule")
    services.delete_rule(db.session, rule_id, caller(), version)
    db.session.commit()
    return "", 204


@api.put(
    "/rules/order",
    scope=WRITE,
    tag=TAG,
    body=RuleOrderIn,
    answers={200: RuleList, 409: None},
)
def set_rule_order(json: RuleOrderIn) -> RuleList:
    """Reorder the rules

    `order` names every rule but the catch-all (which stays last) once. With `expected_order`,
    a 409 when someone reordered them since you read them: nothing changes.
    """
    _ready()
    try:
        rules = services.set_order(db.session, json.order, caller(), json.expected_order)
    except Conflict as err:
        if err.message != services.STALE_ORDER:
            raise
        raise Conflict(STALE_ORDER, field="expected_order") from err
    db.session.commit()
    return _listed(rules)


@api.post(
    "/rules/preview",
    scope=READ,
    tag=TAG,
    body=RulePreviewIn,
    answers={200: RulePreviewOut, 404: None},
)
def preview_rule(json: RulePreviewIn) -> RulePreviewOut:
    """What a rule would match, before it is saved

    A new rule (as POST /rules takes it) is tried just before the catch-all; with `rule_id`,
    the saved rule with the fields sent changed (as PATCH takes them), in its place. Every
    check of saving runs (422 naming the field); nothing is saved.
    """
    _ready()
    rule = None if json.rule_id is None else services.get_rule_or_404(db.session, json.rule_id)
    changes = json.changes()
    changes.pop("rule_id", None)
    with body_fields():
        data = _edit(rule, changes) if rule is not None else changes
        draft = services.parse_rule(db.session, data, rule)
    preview = engine.preview(db.session, draft, engine.load_rules(db.session))
    return RulePreviewOut.of(preview)


@api.get("/rules/apply", scope=READ, tag=TAG, answers={200: RulePlanOut})
def rules_apply_plan() -> RulePlanOut:
    """What Apply rules to existing devices would do now

    Per rule: pending devices it would approve or hold, approved devices it would move or
    leave. `changes` is what POST /rules/apply expects.
    """
    _ready()
    plan = routing.apply_plan(db.session)
    db.session.commit()
    return RulePlanOut.of(plan)


@api.post(
    "/rules/apply",
    scope=WRITE,
    tag=TAG,
    body=RuleApplyIn,
    answers={202: Accepted, 409: None},
)
def apply_rules(json: RuleApplyIn):
    """Apply the rules to the devices already here

    202: an operation approves pending devices and moves approved ones where the rules say
    (sent to KME); follow `operation_url`. 409 `count_mismatch` when `expected_changes` is not
    what would change now; 409 while an apply runs or when nothing would change.
    """
    _ready()
    operation = routing.start_apply(db.session, caller(), json.expected_changes)
    db.session.commit()
    return Accepted.answer(operation.id, operation.total)
