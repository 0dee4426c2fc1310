"""/operators (owners): list, add, change role, remove; /tenants (configured owners)."""

from __future__ import annotations

from aiogram import Bot, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, Message

from bot.callbacks import OpAct
from bot.commands import publish_for
from bot.handlers.jobs import edit
from bot.render.common import clip, h, keyboard
from core.actor import Actor
from core.errors import InvalidInput
from core.services.container import Services
from core.services.operators import OperatorRow, parse_role, parse_user_id
from storage.models import Role

USAGE = (  # plain text: errors are sent without parse mode
    "Usage:\n/operators — list\n/operators add <user id> [operator|viewer]\n"
    "/operators role <user id> operator|viewer\n/operators remove <user id>"
)


def roster(rows: list[OperatorRow], actor: Actor):
    lines = ["<b>Operators</b>"]
    buttons: list[list[tuple[str, str]]] = []
    for r in rows:
        name = h(r.display_name or "—")
        me = " (you)" if r.user_id == actor.user_id else ""
        lines.append(f"• <code>{r.user_id}</code> {name} · <b>{r.role}</b> · {h(r.timezone)}{me}")
        if r.role != Role.owner:
            other = Role.viewer if r.role == Role.operator else Role.operator
            buttons.append(
                [
                    (f"{r.user_id}: make {other}", OpAct(act="role", id=r.id, role=other).pack()),
                    (f"Remove {r.user_id}", OpAct(act="remove", id=r.id).pack()),
                ]
            )
    lines.append("\nAdd with /operators add &lt;user id&gt; [operator|viewer].")
    return clip("\n".join(lines)), keyboard(buttons)


async def _find(actor: Actor, services: Services, user_id: int) -> OperatorRow:
    for row in await services.operators.list(actor):
        if row.user_id == user_id:
            return row
    raise InvalidInput(f"User {user_id} is not an operator of this workspace.")


async def operators(
    message: Message, command: CommandObject, actor: Actor, services: Services, bot: Bot
) -> None:
    actor.require(Role.owner, "manage operators")
    args = (command.args or "").split()
    ops = services.operators
    if not args:
        text, markup = roster(await ops.list(actor), actor)
        await message.answer(text, reply_markup=markup)
        return
    verb, rest = args[0].lower(), args[1:]
    if verb == "add" and len(rest) in (1, 2):
        role = parse_role(rest[1]) if len(rest) == 2 else Role.operator
        row = await ops.add(actor, parse_user_id(rest[0]), role)
        await publish_for(bot, row.user_id, row.role)
        await message.answer(
            f"Added <code>{row.user_id}</code> as <b>{row.role}</b>. "
            "They can now open the bot and press Start."
        )
    elif verb == "role" and len(rest) == 2:
        target = await _find(actor, services, parse_user_id(rest[0]))
        row = await ops.set_role(actor, target.id, parse_role(rest[1]))
        await publish_for(bot, row.user_id, row.role)
        await message.answer(f"<code>{row.user_id}</code> is now <b>{row.role}</b>.")
    elif verb == "remove" and len(rest) == 1:
        target = await _find(actor, services, parse_user_id(rest[0]))
        user_id = await ops.remove(actor, target.id)
        await publish_for(bot, user_id, None)
        await message.answer(f"Removed <code>{user_id}</code>.")
    else:
        raise InvalidInput(USAGE)


async def operator_button(
    query: CallbackQuery, callback_data: OpAct, actor: Actor, services: Services, bot: Bot
) -> None:
    ops = services.operators
    act = callback_data.act
    if act == "role":
        row = await ops.set_role(actor, callback_data.id, parse_role(callback_data.role))
        await publish_for(bot, row.user_id, row.role)
        await query.answer(f"{row.user_id} is now {row.role}.")
    elif act == "remove":
        actor.require(Role.owner, "remove operators")
        await query.answer()
        await edit(
            query,
            "Remove this operator? They lose access at once.",
            keyboard(
                [
                    [
                        ("Yes, remove", OpAct(act="remove_yes", id=callback_data.id).pack()),
                        ("No", OpAct(act="cancel", id=callback_data.id).pack()),
                    ]
                ]
            ),
        )
        return
    elif act == "remove_yes":
        user_id = await ops.remove(actor, callback_data.id)
        await publish_for(bot, user_id, None)
        await query.answer(f"Removed {user_id}.")
    elif act == "cancel":
        await query.answer("Nothing changed.")
    else:
        await query.answer("This button is no longer valid.")
        return
    text, markup = roster(await ops.list(actor), actor)
    await edit(query, text, markup)


async def tenants(
    message: Message, command: CommandObject, actor: Actor, services: Services, bot: Bot
) -> None:
    ops = services.operators
    args = (command.args or "").split()
    if not args:
        rows = await ops.list_tenants(actor)
        lines = ["<b>Workspaces</b>"] + [
            f"• <code>{h(t.slug)}</code> · {n} operator(s)"
            + (" · queue paused" if t.queue_paused else "")
            for t, n in rows
        ]
        lines.append("\nCreate one: /tenants add &lt;name&gt; &lt;first owner user id&gt;")
        await message.answer("\n".join(lines))
        return
    if args[0].lower() == "add" and len(args) == 3:
        tenant = await ops.create_tenant(actor, args[1], parse_user_id(args[2]))
        await publish_for(bot, int(args[2]), Role.owner)
        await message.answer(
            f"Workspace <code>{h(tenant.slug)}</code> created; <code>{h(args[2])}</code> owns it."
        )
        return
    raise InvalidInput("Usage: /tenants, or /tenants add <name> <first owner user id>")


def build_router() -> Router:
    router = Router(name="operators")
    router.message.register(operators, Command("operators"))
    router.callback_query.register(operator_button, OpAct.filter())
    router.message.register(tenants, Command("tenants"))
    return router
