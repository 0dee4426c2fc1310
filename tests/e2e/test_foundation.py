"""The foundation through the fake Telegram server: access, menus, operators, settings, audit."""

from __future__ import annotations

import asyncio

from bot.callbacks import JobAct, OpAct
from tests.e2e.conftest import OPERATOR, OWNER, STRANGER, VIEWER, Harness


async def test_stranger_is_refused_everything_but_start(app: Harness) -> None:
    reply = await app.say(STRANGER, "/jobs")
    assert "private operations bot" in reply["text"]
    assert str(STRANGER) in reply["text"]
    # another stranger (the flood rule answers each one once a minute) may /start
    app.users[STRANGER + 1] = app.tg.user(STRANGER + 1, "Sam")
    start = await app.say(STRANGER + 1, "/start")
    assert "private operations bot" in start["text"]
    # a forged button press is refused with an alert and changes nothing
    job_id = await app.submit_job("test.ok", requires_approval=True)
    answer = await app.forge(STRANGER + 1, start, JobAct(act="approve", id=job_id).pack())
    assert answer["show_alert"] and "not allowed" in answer["text"]
    assert (await app.job(job_id)).status == "pending_approval"


async def test_stranger_flood_gets_one_answer(app: Harness) -> None:
    for i in range(20):
        await app.tg.send_text(app.user(STRANGER), f"hello {i}")
    await app.tg.wait_until(lambda: len(app.tg.messages(STRANGER)) >= 1, timeout=5)
    await asyncio.sleep(0.5)
    assert len(app.tg.messages(STRANGER)) == 1


async def test_start_and_menu_navigation(app: Harness) -> None:
    menu = await app.say(OWNER, "/start", "Choose a section")
    texts = [t for t, _ in app.tg.buttons(menu)]
    assert "👥 Operators" in texts and "🧾 Jobs" in texts
    await app.press(OWNER, menu, app.button(menu, "Timezone"))
    await app.becomes(menu, lambda m: "Your timezone" in m["text"])
    viewer_menu = await app.say(VIEWER, "/menu", "Choose a section")
    assert "👥 Operators" not in [t for t, _ in app.tg.buttons(viewer_menu)]


async def test_commands_are_registered_per_role(app: Harness) -> None:
    owner_cmds = {c["command"] for c in app.tg.commands({"type": "chat", "chat_id": OWNER})}
    assert {"operators", "audit", "jobs"} <= owner_cmds
    default = {c["command"] for c in app.tg.commands({"type": "default"})}
    assert default == {"start", "help"}


async def test_unknown_command_and_bad_arguments_get_clear_answers(app: Harness) -> None:
    assert "I don't know /frobnicate" in (await app.say(OPERATOR, "/frobnicate now"))["text"]
    assert "didn't understand" in (await app.say(OPERATOR, "hello?"))["text"]
    assert "Unknown status" in (await app.say(OPERATOR, "/jobs sideways"))["text"]
    assert "Usage: /queue" in (await app.say(OPERATOR, "/queue explode"))["text"]
    assert "Unknown timezone" in (await app.say(OPERATOR, "/tz Mars/Olympus"))["text"]
    assert "Usage: /notify" in (await app.say(OPERATOR, "/notify maybe"))["text"]
    # operators cannot manage operators or read the audit log
    assert "cannot manage operators" in (await app.say(OPERATOR, "/operators"))["text"]
    assert "cannot read the audit log" in (await app.say(OPERATOR, "/audit"))["text"]


async def test_owner_manages_operators_and_everything_is_audited(app: Harness) -> None:
    added = await app.say(OWNER, "/operators add 3001 viewer", "Added")
    assert "3001" in added["text"] and "viewer" in added["text"]
    assert "already here" in (await app.say(OWNER, "/operators add 3001"))["text"]
    assert "positive number" in (await app.say(OWNER, "/operators add bob"))["text"]
    assert "operator or viewer" in (await app.say(OWNER, "/operators add 3002 owner"))["text"]
    # the new viewer got the viewer's command list
    assert {c["command"] for c in app.tg.commands({"type": "chat", "chat_id": 3001})} >= {
        "jobs",
        "tz",
    }
    roster = await app.say(OWNER, "/operators", "Operators")
    assert "3001" in roster["text"]
    answer = await app.press(OWNER, roster, app.button(roster, "3001: make operator"))
    assert "3001 is now operator" in answer["text"]
    roster2 = await app.becomes(roster, lambda m: "3001: make viewer" in app.buttons_text(m))
    # remove, behind a confirmation
    await app.press(OWNER, roster2, app.button(roster2, "Remove 3001"))
    confirm = await app.becomes(roster, lambda m: "Remove this operator?" in m["text"])
    answer = await app.press(OWNER, confirm, app.button(confirm, "Yes, remove"))
    assert "Removed 3001" in answer["text"]
    # a stale press on the old roster's button: refused, nothing changes
    stale = await app.forge(OWNER, roster2, OpAct(act="remove_yes", id=999).pack())
    assert "not in your workspace" in stale["text"]
    audit = await app.say(OWNER, "/audit", "Audit log")
    for action in ("operator.add", "operator.role", "operator.remove"):
        assert action in audit["text"]


async def test_owner_cannot_demote_self_or_other_owners(app: Harness) -> None:
    from storage.models import Role

    assert "your own role" in (await app.say(OWNER, f"/operators role {OWNER} viewer"))["text"]
    await app.add_operator(1009, Role.owner)
    reply = await app.say(OWNER, "/operators remove 1009")
    assert "Owners are set in the configuration" in reply["text"]


async def test_viewer_cannot_press_operator_buttons(app: Harness) -> None:
    roster = await app.say(OWNER, "/operators", "Operators")
    data = OpAct(act="role", id=1, role="operator").pack()
    answer = await app.forge(VIEWER, roster, data)
    assert "cannot" in answer["text"]


async def test_timezone_changes_every_time_shown(app: Harness) -> None:
    reply = await app.say(OPERATOR, "/tz europe/berlin", "Timezone set")
    assert "Europe/Berlin" in reply["text"]
    job_id = await app.submit_job("test.ok", requires_approval=True)
    listing = await app.say(OPERATOR, "/jobs pending", "Jobs")
    await app.press(OPERATOR, listing, app.button(listing, f"#{job_id}"))
    card = await app.becomes(listing, lambda m: f"Job #{job_id}" in m["text"])
    assert "Next run:" in card["text"] and ("CET" in card["text"] or "CEST" in card["text"])


async def test_tenants_isolate_data(app: Harness) -> None:
    assert "already belongs" in (await app.say(OWNER, f"/tenants add acme {OPERATOR}"))["text"]
    created = await app.say(OWNER, "/tenants add acme 4001", "created")
    assert "acme" in created["text"]
    assert "2–32" in (await app.say(OWNER, "/tenants add -bad- 4002"))["text"]
    # the acme owner sees none of the owner workspace's jobs and cannot touch them
    job_id = await app.submit_job("test.ok", requires_approval=True)
    app.users[4001] = app.tg.user(4001, "Ada")
    listing = await app.say(4001, "/jobs all", "Jobs")
    assert f"#{job_id}" not in listing["text"]
    answer = await app.forge(4001, listing, JobAct(act="approve", id=job_id).pack())
    assert "does not exist in your workspace" in answer["text"]
    assert (await app.job(job_id)).status == "pending_approval"
    # an operator (not a configured owner) cannot create workspaces
    assert "OPSDECK_OWNER_IDS" in (await app.say(4001, "/tenants add evil 4003"))["text"]


async def test_plain_notifications_survive_html_characters(app: Harness) -> None:
    owner = await app.actor(OWNER)
    text = "Published: <b>not bold</b> & Tom's <3 post"
    await app.app.notifier.tell_operators(owner.tenant_id, text)
    got = await app.tg.wait_for_message(OPERATOR, "Published:", timeout=10)
    assert got["text"] == text


async def test_cancel_outside_a_flow_says_so(app: Harness) -> None:
    assert (await app.say(OPERATOR, "/cancel"))["text"] == "Nothing to cancel."
