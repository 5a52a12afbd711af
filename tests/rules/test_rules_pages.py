"""Admin › Routing rules as an admin and a viewer use it: the list in order, the editor with
its errors and its preview, reordering with and without JavaScript, Delete, and Apply rules to
existing devices (its counts first, then the operation, run by a real worker)."""

from __future__ import annotations

import io
import re

import pytest
from sqlalchemy import func, select

from kmeweb.audit.models import AuditEvent
from kmeweb.devices.models import Device
from kmeweb.operations.models import Operation, OperationKind
from kmeweb.profiles import services as profiles
from kmeweb.rules import services as rules
from kmeweb.rules.models import RoutingRule
from tests.factories import (
    bulk_devices,
    count_rows,
    make_default_profile,
    make_end_user,
    make_profile,
    make_reseller,
    make_upload,
)
from tests.sync_fixtures import with_sync_config

HX = {"HX-Request": "true"}
ACTOR = "actor@example.com"


@pytest.fixture
def app_config(app_config: dict) -> dict:
    return with_sync_config(app_config)


@pytest.fixture
def default(session):
    return make_default_profile(session)


def text(response) -> str:
    return response.get_data(as_text=True)


def error_of(page: str, field_id: str) -> str:
    """The message shown next to a field (its <p id="<field>-error">)."""
    assert f'id="{field_id}-error"' in page, f"no error next to {field_id}"
    return page.split(f'id="{field_id}-error"', 1)[1].split(">", 1)[1].split("</", 1)[0]


def rule_names(page: str) -> list[str]:
    """The rules in the order the list shows them."""
    return re.findall(r'data-testid="rule-name">([^<]+)<', page)


def order_of(session) -> str:
    return ",".join(str(i) for i in rules.order_of(rules.list_rules(session)))


def make_rule(session, name: str, **data):
    values = {"name": name, "model_patterns": "SM-T*", "action": "hold", **data}
    rule = rules.create_rule(session, values, ACTOR)
    session.commit()
    return rule


def form(**over) -> dict:
    """The editor's fields as a browser posts them."""
    return {
        "name": "Tablets",
        "order_patterns": "",
        "model_patterns": "SM-T*",
        "identifiers": "",
        "imei_from": "",
        "imei_to": "",
        "action": "approve",
        "profile_id": "default",
        "end_user_id": "",
        "attributes-0-key": "",
        "attributes-0-value": "",
        **over,
    }


# --- the list --------------------------------------------------------------------------------


def test_the_list_says_each_rule_in_words_the_last_one_last(client, login, session, default):
    login()
    sales = make_profile(session, name="Sales")
    doomed = make_profile(session, name="Old kiosk")
    reseller = make_reseller(session, name="Reseller A")
    user = make_end_user(session, username="alice@example.com", display_name="Alice Example")
    make_rule(
        session,
        "Sales orders",
        model_patterns="",
        reseller_ids=[reseller.id],
        order_patterns="PO-SALES-*",
        action="approve",
        profile_id=str(sales.id),
        end_user_id=str(user.id),
        attributes={"site": "Berlin"},
    )
    make_rule(session, "Kiosk tablets", profile_id=str(doomed.id))
    profiles.delete_profile(session, doomed.id, ACTOR)
    session.commit()

    page = text(client.get("/admin/rules/"))
    assert rule_names(page) == ["Sales orders", "Kiosk tablets", "Everything else"]
    cards = page.split('data-testid="rule"')[1:]
    assert "Reseller is Reseller A" in cards[0] and "Order number matches PO-SALES-*" in cards[0]
    assert "Approve at once</strong> into <strong>Sales</strong>" in cards[0]
    assert "Alice Example" in cards[0] and "site: Berlin" in cards[0]
    assert 'data-testid="rule-version">version 1<' in cards[0]
    assert 'data-testid="broken"' not in cards[0]
    assert 'data-testid="broken"' in cards[1]
    assert "Rule “Kiosk tablets” points at a profile that was deleted" in cards[1]
    assert "Hold for approval" in cards[1]
    assert "The last rule: everything else" in cards[2]
    assert "Every device no rule above matches" in cards[2]
    # the last rule has neither Up, Down nor Delete; the first cannot go up, the last but one down
    assert "Move Everything else" not in page and "Delete Everything else" not in page
    assert re.search(r'disabled aria-label="Move Sales orders up"', page)
    assert re.search(r'disabled aria-label="Move Kiosk tablets down"', page)
    assert "Add rule" in page and "Apply rules to existing devices" in page


def test_a_viewer_sees_every_rule_read_only_and_cannot_post(
    client, login, session, default, actions
):
    rule = make_rule(session, "Tablets")
    login("viewer")
    page = text(client.get("/admin/rules/"))
    assert rule_names(page) == ["Tablets", "Everything else"]
    for control in ("Add rule", "Apply rules to", "Move Tablets", "Delete Tablets", "Edit Tablets"):
        assert control not in page, control
    editor = text(client.get(f"/admin/rules/{rule.id}"))
    assert "Your role can look but not change anything." in editor
    assert 'fieldset class="kme-plain-fieldset" disabled' in editor
    assert " Save</button>" not in editor and "hx-post" not in editor
    assert 'data-testid="preview-total"' in editor  # what the rule matches, read-only
    assert client.get("/admin/rules/new").status_code == 403
    order = order_of(session)
    for path, data in (
        ("/admin/rules/new", form()),
        (f"/admin/rules/{rule.id}", form(version="1")),
        (f"/admin/rules/{rule.id}/move", {"direction": "down", "expected_order": order}),
        ("/admin/rules/order", {"order": order, "expected_order": order}),
        (f"/admin/rules/{rule.id}/delete", {"version": "1"}),
        ("/admin/rules/preview", form()),
        ("/admin/rules/apply", {"expected_changes": "0"}),
    ):
        assert actions.post(path, data).status_code == 403, path
    assert session.get(RoutingRule, rule.id).version == 1


# --- the editor ----------------------------------------------------------------------------


def test_add_rule_saves_it_before_the_last_and_says_no_device_moved(
    client, login, actions, session, default
):
    login()
    kiosk = make_profile(session, name="Kiosk")
    reseller = make_reseller(session, name="Reseller A")
    user = make_end_user(session, username="alice@example.com")
    page = text(client.get(f"/admin/rules/new?reseller_id={reseller.id}"))
    assert f'id="reseller_ids-{reseller.id}" checked' in page  # opened from the reseller's page
    assert "Saving changes no device already here; use Apply rules to existing devices." in page
    options = re.findall(
        r'<option[^>]*value="([^"]*)"[^>]*>([^<]*)<', page.split('id="profile_id"')[1]
    )
    assert options[:2] == [("default", "Samsung KME Default Profile"), (str(kiosk.id), "Kiosk")]
    pending = make_upload(session, pending=2)
    before = session.scalars(select(Device.approval).where(Device.upload_id == pending.id)).all()

    response = actions.post(
        "/admin/rules/new",
        form(
            name="Kiosk tablets",
            reseller_ids=str(reseller.id),
            profile_id=str(kiosk.id),
            end_user_id=str(user.id),
            **{"attributes-0-key": "site", "attributes-0-value": "Berlin"},
        ),
    )
    assert response.status_code == 303
    rule = session.scalar(select(RoutingRule).where(RoutingRule.name == "Kiosk tablets"))
    assert response.headers["Location"].endswith(f"/admin/rules/#rule-{rule.id}")
    assert (rule.reseller_ids, rule.model_patterns, rule.profile_id) == (
        [reseller.id],
        ["SM-T*"],
        kiosk.id,
    )
    assert (rule.end_user_id, rule.attributes, rule.action) == (
        user.id,
        {"site": "Berlin"},
        "approve",
    )
    page = text(client.get("/admin/rules/"))
    assert "Rule “Kiosk tablets” was saved. Saving changes no device already here" in page
    assert rule_names(page) == ["Kiosk tablets", "Everything else"]
    after = session.scalars(select(Device.approval).where(Device.upload_id == pending.id)).all()
    assert after == before  # saving approved nothing


def test_every_refusal_shows_next_to_its_field_and_nothing_is_saved(
    client, login, actions, session, default
):
    login()
    make_rule(session, "Taken")
    response = actions.post(
        "/admin/rules/new",
        form(
            name="taken",
            order_patterns="PO SALES %",
            model_patterns="*",
            identifiers="350000000000000\nnot-an-imei!",
            imei_from="35000000000000",
            imei_to="350000000000001",
            profile_id="999",
            **{"attributes-0-key": "bad/name", "attributes-0-value": "x"},
        ),
    )
    assert response.status_code == 422
    page = text(response)
    assert error_of(page, "name") == "Another rule has this name."
    assert "is not a pattern" in error_of(page, "order_patterns")
    assert "matches every model" in error_of(page, "model_patterns")
    assert "Not an IMEI, MEID or serial number" in error_of(page, "identifiers")
    assert error_of(page, "imei_from") == "An IMEI has 15 digits."
    assert error_of(page, "profile_id") == "Choose a Samsung Knox Mobile Enrollment profile."
    assert "A name has 1 to 64 letters" in error_of(page, "attributes-0-key")
    assert 'value="bad/name"' in page and "not-an-imei!" in page  # what was typed stays
    assert count_rows(session, RoutingRule) == 2

    response = actions.post("/admin/rules/new", form(name="Nothing", model_patterns=""))
    assert response.status_code == 422
    alert = text(response).split('data-testid="conditions-error">')[1].split("</div>")[0]
    assert "Give the rule at least one condition" in alert
    response = actions.post(
        "/admin/rules/new", form(name="", imei_from="350000000000009", imei_to="350000000000001")
    )
    page = text(response)
    assert error_of(page, "name") == "Enter a name."
    assert error_of(page, "imei_to") == "The range ends before it starts."


def test_a_stale_edit_is_refused_409_and_says_to_reload(client, login, actions, session, default):
    login()
    rule = make_rule(session, "Tablets")
    page = text(client.get(f"/admin/rules/{rule.id}"))
    assert 'name="version" type="hidden" value="1"' in page
    rules.update_rule(session, rule.id, {**form(name="Tablets", model_patterns="SM-X*")}, ACTOR)
    session.commit()  # someone else saved version 2 meanwhile

    response = actions.post(f"/admin/rules/{rule.id}", form(name="Mine", version="1"))
    assert response.status_code == 409
    page = text(response)
    assert rules.STALE_RULE in page.split('data-testid="form-errors"')[1]
    assert f'href="/admin/rules/{rule.id}"' in page.split('data-testid="form-errors"')[1]  # Reload
    assert 'value="Mine"' in page  # what was typed stays
    session.expire_all()
    assert (rule.name, rule.version, rule.model_patterns) == ("Tablets", 2, ["SM-X*"])

    response = actions.post(f"/admin/rules/{rule.id}", form(name="Mine", version="2"))
    assert response.status_code == 303
    session.expire_all()
    assert (rule.name, rule.version) == ("Mine", 3)


def test_the_last_rule_edits_its_name_and_actions_only(client, login, actions, session, default):
    login()
    kiosk = make_profile(session, name="Kiosk")
    catch_all = rules.ensure_catch_all(session)
    session.commit()
    page = text(client.get(f"/admin/rules/{catch_all.id}"))
    assert 'data-testid="catch-all-note"' in page
    for condition in (
        "reseller_ids",
        "order_patterns",
        "model_patterns",
        "identifiers",
        "imei_from",
    ):
        assert f'name="{condition}"' not in page
    response = actions.post(
        f"/admin/rules/{catch_all.id}",
        form(name="Everything else", action="approve", profile_id=str(kiosk.id), version="1"),
    )
    assert response.status_code == 303
    session.expire_all()
    assert (catch_all.action, catch_all.profile_id, catch_all.model_patterns) == (
        "approve",
        kiosk.id,
        [],
    )


# --- the preview ---------------------------------------------------------------------------


def test_preview_counts_what_the_typed_rule_would_match(client, login, actions, session, default):
    login()
    kiosk = make_profile(session, name="Kiosk")
    office = make_profile(session, name="Office")
    upload = make_upload(session)
    waiting = bulk_devices(
        session, 3, None, approval="pending", upload_id=upload.id, model="SM-T500"
    )
    bulk_devices(session, 2, office, model="SM-T220")
    bulk_devices(session, 1, kiosk, model="SM-T220")
    bulk_devices(session, 4, office, model="SM-G991B")  # not a tablet
    first = session.scalar(select(Device.imei).where(Device.id == waiting[0]))

    response = actions.post(
        "/admin/rules/preview", form(name="", profile_id=str(kiosk.id)), headers=HX
    )
    assert response.status_code == 200
    part = text(response)
    assert "<html" not in part  # the preview alone
    assert re.search(r'data-testid="preview-total"><strong>6</strong> devices match now', part)
    pending = part.split('data-testid="preview-pending"')[1].split("</li>")[0]
    assert "<strong>3</strong> waiting for approval" in pending and "Kiosk" in pending
    approved = part.split('data-testid="preview-approved"')[1].split("</li>")[0]
    assert "<strong>2</strong> would move to <strong>Kiosk</strong>" in approved
    assert "Office: 2" in approved and "<strong>1</strong>" in approved and "already" in approved
    assert first in part.split('data-testid="preview-sample"')[1]
    assert count_rows(session, RoutingRule) == 0  # nothing was saved

    # a rule above takes its devices first
    make_rule(session, "Tablets first", action="approve", profile_id=str(office.id))
    part = text(actions.post("/admin/rules/preview", form(profile_id=str(kiosk.id)), headers=HX))
    assert 'data-testid="preview-total"><strong>0</strong>' in part

    # what the rule cannot be yet, instead of counts
    part = text(actions.post("/admin/rules/preview", form(model_patterns="SM-T%"), headers=HX))
    assert 'data-testid="preview-errors"' in part and "Model: “SM-T%” is not a pattern" in part
    assert 'data-testid="preview-total"' not in part
    part = text(actions.post("/admin/rules/preview", form(model_patterns=""), headers=HX))
    assert 'data-testid="preview-empty"' in part


def test_preview_without_javascript_is_the_editor_again_with_the_file_merged(
    client, login, actions, session, default
):
    login()
    upload = make_upload(session)
    ids = bulk_devices(session, 2, None, approval="pending", upload_id=upload.id)
    imeis = list(session.scalars(select(Device.imei).where(Device.id.in_(ids)).order_by(Device.id)))
    csv_text = f"imei,serial,model\n{imeis[0]},,SM-T500\n,R58N12ABCDE,SM-T500\n"
    response = actions.post(
        "/admin/rules/preview",
        {
            **form(name="Executives", model_patterns="", identifiers=imeis[1]),
            "identifiers_file": (io.BytesIO(csv_text.encode()), "executives.csv"),
        },
        content_type="multipart/form-data",
    )
    assert response.status_code == 200
    page = text(response)
    assert "<html" in page and 'value="Executives"' in page
    listed = page.split('name="identifiers"')[1].split(">", 1)[1].split("</textarea>")[0]
    assert listed.split() == [imeis[1], imeis[0], "R58N12ABCDE"]
    assert 'data-testid="preview-total"><strong>2</strong> devices match now' in page

    big = b"imei\n" + b"350000000000000\n" * (rules.IDENTIFIERS_FILE_MAX // 16 + 10)
    response = actions.post(
        "/admin/rules/new",
        {**form(name="Big"), "identifiers_file": (io.BytesIO(big), "big.csv")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 422
    assert "The file is larger than 1 MB" in error_of(text(response), "identifiers_file")
    assert count_rows(session, RoutingRule) == 0


# --- reordering ------------------------------------------------------------------------------


def test_up_and_down_reorder_without_javascript(client, login, actions, session, default):
    login()
    a, b, c = (make_rule(session, name) for name in ("A", "B", "C"))
    response = actions.post(
        f"/admin/rules/{c.id}/move", {"direction": "up", "expected_order": order_of(session)}
    )
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"/admin/rules/#rule-{c.id}")
    page = text(client.get("/admin/rules/"))
    assert rule_names(page) == ["A", "C", "B", "Everything else"]
    assert "The new order of the rules was saved." in page
    response = actions.post(
        f"/admin/rules/{a.id}/move", {"direction": "down", "expected_order": order_of(session)}
    )
    assert response.status_code == 303
    assert rule_names(text(client.get("/admin/rules/"))) == ["C", "A", "B", "Everything else"]
    assert session.scalar(select(func.count()).where(AuditEvent.action == "rule.order")) == 2


def test_reordering_a_stale_page_is_refused_409_and_says_to_reload(
    client, login, actions, session, default
):
    login()
    a, b = make_rule(session, "A"), make_rule(session, "B")
    seen = order_of(session)
    rules.move_rule(session, b.id, "up", ACTOR)  # someone else, meanwhile
    session.commit()

    response = actions.post(
        f"/admin/rules/{a.id}/move", {"direction": "down", "expected_order": seen}
    )
    assert response.status_code == 409
    page = text(response)
    alert = page.split('data-testid="rules-error"')[1].split("</div>")[0]
    assert rules.STALE_ORDER in alert and 'href="/admin/rules/"' in alert and "Reload" in alert
    assert rule_names(page) == ["B", "A", "Everything else"]  # the order as it is now

    catch_all = rules.ensure_catch_all(session)
    response = actions.post(
        f"/admin/rules/{catch_all.id}/move",
        {"direction": "up", "expected_order": order_of(session)},
    )
    assert response.status_code == 409
    assert "The last rule stays last" in text(response)


def test_dragging_posts_the_whole_order_and_gets_the_list_back(
    client, login, actions, session, default
):
    login()
    a, b, c = (make_rule(session, name) for name in ("A", "B", "C"))
    seen = order_of(session)
    response = actions.post(
        "/admin/rules/order", {"order": f"{c.id},{a.id},{b.id}", "expected_order": seen}, headers=HX
    )
    assert response.status_code == 200
    part = text(response)
    assert "<html" not in part and part.lstrip().startswith('<div id="rules-content">')
    assert rule_names(part) == ["C", "A", "B", "Everything else"]
    assert f'name="expected_order" value="{c.id},{a.id},{b.id}"' in part  # the next drag's
    assert 'hx-swap-oob="true"' in part and "The new order of the rules was saved." in part

    response = actions.post(
        "/admin/rules/order", {"order": f"{a.id},{b.id},{c.id}", "expected_order": seen}, headers=HX
    )
    assert response.status_code == 409  # htmx swaps it: the list as it is now, and why
    part = text(response)
    assert rules.STALE_ORDER in part and rule_names(part) == ["C", "A", "B", "Everything else"]
    response = actions.post(
        "/admin/rules/order",
        {"order": f"{a.id},{b.id}", "expected_order": order_of(session)},
        headers=HX,
    )
    assert response.status_code == 422
    assert "Give each rule but the last one once." in text(response)


# --- delete ----------------------------------------------------------------------------------


def test_delete_asks_first_then_deletes(client, login, actions, session, default, htmx):
    login()
    rule = make_rule(session, "Tablets")
    dialog = text(htmx.get(f"/admin/rules/{rule.id}/delete"))
    assert "<html" not in dialog and 'data-testid="delete-rule-name">Tablets<' in dialog
    assert 'data-bs-dismiss="modal"' in dialog
    page = text(client.get(f"/admin/rules/{rule.id}/delete"))  # without JavaScript: a page
    assert "<html" in page and 'href="/admin/rules/">Cancel' in page
    assert count_rows(session, RoutingRule) == 2  # asking deleted nothing

    response = actions.post(f"/admin/rules/{rule.id}/delete", {"version": "1"})
    assert response.status_code == 303 and response.headers["Location"].endswith("/admin/rules/")
    page = text(client.get("/admin/rules/"))
    assert "Rule “Tablets” was deleted; the devices it placed stay where they are." in page
    assert rule_names(page) == ["Everything else"]


def test_the_last_rule_cannot_be_deleted(client, login, actions, session, default, htmx):
    login()
    catch_all = rules.ensure_catch_all(session)
    session.commit()
    dialog = text(htmx.get(f"/admin/rules/{catch_all.id}/delete"))
    assert "it cannot be deleted" in dialog and "btn-danger" not in dialog
    response = actions.post(f"/admin/rules/{catch_all.id}/delete", {"version": "1"}, headers=HX)
    assert response.status_code == 409
    assert "The last rule says what happens to everything else: it stays." in text(response)
    assert session.get(RoutingRule, catch_all.id) is not None


# --- apply to existing devices -------------------------------------------------------------


def test_apply_shows_the_counts_then_starts_the_operation(
    client, login, actions, session, default, work
):
    login()
    kiosk = make_profile(session, name="Kiosk")
    office = make_profile(session, name="Office")
    make_rule(session, "Tablets", action="approve", profile_id=str(kiosk.id))
    tablets = bulk_devices(session, 3, office, model="SM-T220")
    bulk_devices(session, 2, office, model="SM-G991B")

    page = text(client.get("/admin/rules/apply"))
    lines = page.split('data-testid="plan-line"')[1:]
    assert 'data-testid="plan-move">3<' in lines[0] and "Kiosk" in lines[0]
    assert "Everything else" in lines[-1] and 'data-testid="plan-stay">' in lines[-1]
    assert re.search(r'data-testid="apply-total"><strong>3</strong> devices would change', page)
    assert 'name="expected_changes" type="hidden" value="3"' in page
    assert count_rows(session, Operation) == 0  # asking started nothing

    bulk_devices(session, 1, office, model="SM-T500")  # one more tablet meanwhile
    response = actions.post("/admin/rules/apply", {"expected_changes": "3"})
    assert response.status_code == 409
    page = text(response)
    assert "4 devices would change now, not 3" in page.split('data-testid="apply-error"')[1]
    assert 'name="expected_changes" type="hidden" value="4"' in page  # the counts of now

    response = actions.post("/admin/rules/apply", {"expected_changes": "4"})
    assert response.status_code == 303
    operation = session.scalar(select(Operation).where(Operation.kind == OperationKind.RULES_APPLY))
    assert response.headers["Location"].endswith(f"/admin/rules/?op={operation.id}")
    page = text(client.get(f"/admin/rules/?op={operation.id}"))
    assert "“Apply routing rules to 4 devices” started" in page
    assert f'id="op-status-{operation.id}"' in page.split('data-testid="apply-operation"')[1]

    work()
    moved = session.scalars(select(Device.profile_id).where(Device.id.in_(tablets))).all()
    assert set(moved) == {kiosk.id}
    page = text(client.get("/admin/rules/apply"))
    assert "Every device is where the rules say: nothing would change." in page
    assert "Confirm: apply" not in page
