"""The vault in chat: files operators send, claim links, `/start <code>` claims, /vault, /links."""

from __future__ import annotations

import re
from typing import Any

from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandObject, CommandStart, Filter, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message
from sqlalchemy.ext.asyncio import AsyncSession

from bot.callbacks import (
    ChartAct,
    VaultAlbum,
    VaultItemAct,
    VaultLinkNew,
    VaultLinks,
    VaultList,
    VaultPick,
)
from bot.flood import StrangerReplies
from bot.handlers.compose_states import Compose
from bot.handlers.jobs import edit
from bot.inbox import handled_in
from bot.outbox import Outbox
from bot.render import vault as render
from bot.render.common import keyboard
from bot.vault_delivery import answer_claim, deliver, deliver_batch, telegram_content, url_message
from core.actor import Actor
from core.errors import Conflict, InvalidInput
from core.services.container import Services
from core.settings import Settings
from core.vault import (
    Claimer,
    ClaimOutcome,
    ClaimResult,
    ClaimService,
    IngestResult,
    IngestSource,
    VaultKind,
    VaultService,
)
from storage.models import Role

FILE_KINDS = ("animation", "document", "photo", "video", "audio", "voice")  # animation first
MAX_CUSTOM_DAYS = 365
_DURATION = re.compile(r"(\d+)\s*(w|d|h|m|min|mins|minutes?|hours?|days?|weeks?)", re.I)
_UNIT = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60}


class VaultForm(StatesGroup):
    life = State()
    uses = State()
    rename = State()
    pick = State()  # /vault's multi-select for a batch link; data {"sel": [item ids]}


class HasVaultFile(Filter):
    """A message carrying a file the vault can keep."""

    async def __call__(self, message: Message) -> bool:
        return any(getattr(message, kind, None) for kind in FILE_KINDS)


def vault_of(services: Services) -> VaultService:
    return services.vault


async def flow_data(state: FSMContext) -> dict[str, Any]:
    """The guided flow's data (a lock-free read)."""
    return await state.get_data()


def parse_duration(text: str) -> int:
    """`90m`, `3d`, `12h`, `1w`, `1d 12h` → seconds."""
    text = text.strip()
    parts = _DURATION.findall(text)
    if not parts or _DURATION.sub("", text).strip(" ,"):
        raise InvalidInput("Send a duration like 90m, 12h, 3d or 2w (or /cancel).")
    return sum(int(n) * _UNIT[unit[0].lower()] for n, unit in parts)


# -- ingest -------------------------------------------------------------------------------------
def file_of(message: Message) -> tuple[str, Any] | None:
    """(kind, Telegram file object) of a message carrying a file the vault can keep."""
    kind = next((k for k in FILE_KINDS if getattr(message, k, None)), None)
    if kind is None:
        return None
    return kind, message.photo[-1] if kind == "photo" else getattr(message, kind)  # type: ignore[index]


async def ingest_file(
    message: Message, bot: Bot, actor: Actor, vault: VaultService
) -> IngestResult:
    """The message's file into the vault (hashed, sniffed, size cap, same bytes → that item).
    Also the /post picture step's way in, so a picture sent there is kept like any other."""
    actor.require(Role.operator, "add files to the vault")
    found = file_of(message)
    if found is None:
        raise InvalidInput("That message carries no file.")
    kind, obj = found
    size = getattr(obj, "file_size", None)
    content = None
    if size is None or size <= vault.config.max_file_bytes:
        # a file over the cap is refused by ingest without fetching
        content = await telegram_content(bot, obj.file_id, size)
    return await vault.ingest(
        actor,
        IngestSource(
            kind=VaultKind(kind),
            file_id=obj.file_id,
            file_unique_id=obj.file_unique_id,
            name=getattr(obj, "file_name", None),
            mime=getattr(obj, "mime_type", None),
            size=size,
            caption=message.caption,
            content=content,
        ),
    )


async def ingest(message: Message, bot: Bot, actor: Actor, services: Services) -> None:
    vault = vault_of(services)
    result = await ingest_file(message, bot, actor, vault)
    album = message.media_group_id
    if album:  # each part arrives on its own; each card can link the whole album
        await vault.note_album_part(actor, album, message.message_id, result.item.id)
    await message.reply(
        render.item_card(result.item, duplicate=result.duplicate),
        reply_markup=render.item_buttons(result.item, actor, album=album),
    )


# -- claims -------------------------------------------------------------------------------------
async def claim(
    message: Message,
    command: CommandObject,
    services: Services,
    outbox: Outbox,
    actor: Actor | None = None,
    stranger_replies: StrangerReplies | None = None,
) -> None:
    """`/start <code>`. The answer, or the file, is queued in the outbox in the claim's own
    write: the use, its access-log row and the queued answer commit together (no use is spent
    with no answer queued), and no Bot API call is made here. The outbox sends it, paced under
    the flood limits, 429s waited out, kept over a restart; a file not yet on Telegram's side
    is uploaded by the sender from the blob store.

    Past `VAULT_CLAIM_FAILURE_LIMIT` malformed or unknown codes in a window, the user is told
    to wait (in minutes) and the code is not looked up; a stranger gets that answer under the
    flood rule (once a minute). Every other answer goes out: a claimer's file, what is wrong
    with a real link, and the first `limit` "does not exist" for mistyped codes."""
    assert message.from_user is not None
    user_id, chat_id = message.from_user.id, message.chat.id
    vault = vault_of(services)
    # keyed by the incoming message: a retried webhook update answers once
    answer_key = f"vault:claim-answer:{chat_id}:{message.message_id}"

    async def answer(result: ClaimResult, session: AsyncSession) -> None:
        # the update is done in this same write: a crash or a resend never claims twice
        await handled_in(session)
        limited = result.outcome is ClaimOutcome.denied_rate_limited and actor is None
        if limited and stranger_replies and not stranger_replies.allow(user_id):
            return  # logged all the same; a stranger's flood is answered once a minute
        await answer_claim(
            outbox, session, result, chat_id=chat_id, user_id=user_id, answer_key=answer_key
        )

    claims = ClaimService(
        vault.uow,
        vault.clock,
        failure_limit=vault.config.claim_failures,  # per user, shared by every process
    )
    await claims.claim(
        (command.args or "").strip(), Claimer.telegram(user_id), "telegram", then=answer
    )


# -- /vault and item cards ----------------------------------------------------------------------
async def vault_command(
    message: Message, command: CommandObject, actor: Actor, services: Services
) -> None:
    vault = vault_of(services)
    args = (command.args or "").split()
    if args and args[0] == "stats":
        chart = ChartAct(act="claims", span="7d").pack()  # drawn by bot/handlers/charts.py
        await message.answer(
            render.stats_text(await vault.stats(actor)),
            reply_markup=keyboard([[("📈 Chart of claims per day", chart)]]),
        )
        return
    kind = args[0] if args else ""
    if kind and kind not in render.KIND_ICON:
        raise InvalidInput(
            "Usage: /vault [kind] or /vault stats; kinds: " + ", ".join(render.KIND_ICON)
        )
    page = await vault.page(actor, kind=kind or None)
    text, markup = render.items_list(page, kind, "")
    await message.answer(text, reply_markup=markup)


async def vault_page(
    query: CallbackQuery, callback_data: VaultList, actor: Actor, services: Services
) -> None:
    nsfw = {"y": True, "n": False}.get(callback_data.nsfw)
    page = await vault_of(services).page(
        actor, kind=callback_data.kind or None, nsfw=nsfw, page=callback_data.page
    )
    await query.answer()
    await edit(query, *render.items_list(page, callback_data.kind, callback_data.nsfw))


async def full_card(vault: VaultService, actor: Actor, item_id: int):
    item = await vault.get(actor, item_id)
    links = await vault.links(actor, active_only=False, item_id=item_id, size=10)
    log = (
        (await vault.access_log(actor, item_id, size=10)).rows
        if actor.at_least(Role.operator)
        else None
    )
    members = await vault.batch_items(actor, item.id) if item.kind == VaultKind.batch else None
    text = render.item_card(
        item,
        links=[pair[0] for pair in links.rows],
        log=log,
        actor=actor,
        now=vault.clock.now(),
        members=members,
    )
    return text, render.item_buttons(item, actor, more=False)


async def item_card(
    query: CallbackQuery, callback_data: VaultItemAct, actor: Actor, services: Services
) -> None:
    """`card` and `more`: the item with its links and (operators) its access log."""
    text, markup = await full_card(vault_of(services), actor, callback_data.id)
    await query.answer()
    await edit(query, text, markup)


async def item_send(
    query: CallbackQuery,
    callback_data: VaultItemAct,
    actor: Actor,
    services: Services,
    outbox: Outbox,
) -> None:
    vault = vault_of(services)
    item = await vault.get(actor, callback_data.id)
    # queued like a claim (paced, uploaded by the sender if Telegram lacks the file);
    # keyed by the press, so a retried webhook update sends once
    key = f"vault:send:{query.id}"
    if item.kind == VaultKind.url:
        await outbox.enqueue_new(
            query.from_user.id,
            "sendMessage",
            dedupe_key=key,
            **url_message(item, f"Short link #{item.id}:"),
        )
    elif item.kind == VaultKind.batch:
        members = await vault.batch_items(actor, item.id)
        await deliver_batch(
            outbox,
            query.from_user.id,
            item,
            members,
            None,
            text=f"Batch #{item.id}: {len(members)} files.",
            dedupe_key=key,
            audience="operator",
        )
    else:
        await deliver(
            outbox,
            query.from_user.id,
            item,
            None,
            caption=item.description,
            dedupe_key=key,
            audience="operator",
        )
    await query.answer("Sending…")


async def item_rename(
    query: CallbackQuery,
    callback_data: VaultItemAct,
    actor: Actor,
    services: Services,
    state: FSMContext,
) -> None:
    actor.require(Role.operator, "rename files")
    item = await vault_of(services).get(actor, callback_data.id)
    await state.set_state(VaultForm.rename)
    await state.set_data({"item_id": item.id})
    await query.answer()
    if query.message is not None:
        await query.message.answer(
            f"Send the new name for <b>{render.h(item.name)}</b> (or /cancel)."
        )


async def item_nsfw(
    query: CallbackQuery, callback_data: VaultItemAct, actor: Actor, services: Services
) -> None:
    vault = vault_of(services)
    item = await vault.get(actor, callback_data.id)
    item = await vault.set_nsfw(actor, item.id, not item.nsfw)
    await query.answer("Marked NSFW." if item.nsfw else "No longer marked NSFW.")
    await edit(query, render.item_card(item), render.item_buttons(item, actor))


async def item_delete(
    query: CallbackQuery, callback_data: VaultItemAct, actor: Actor, services: Services
) -> None:
    actor.require(Role.operator, "delete files")
    item = await vault_of(services).get(actor, callback_data.id)
    await query.answer()
    await edit(query, *render.delete_question(item))


async def item_delete_yes(
    query: CallbackQuery, callback_data: VaultItemAct, actor: Actor, services: Services
) -> None:
    item_id = callback_data.id
    revoked = await vault_of(services).delete(actor, item_id)
    await query.answer(f"File #{item_id} deleted; {revoked} link(s) revoked.")
    await edit(query, f"File #{item_id} deleted; {revoked} link(s) revoked.", None)


# -- create link ----------------------------------------------------------------------------------
async def link_wizard(
    query: CallbackQuery,
    callback_data: VaultLinkNew,
    actor: Actor,
    services: Services,
    state: FSMContext,
    settings: Settings,
    bot_username: str,
) -> None:
    actor.require(Role.operator, "create links")
    vault = vault_of(services)
    item = await vault.get(actor, callback_data.id)
    go = callback_data.go
    if go == "x":
        await query.answer("No link created.")
        await edit(query, render.item_card(item), render.item_buttons(item, actor))
        return
    if go in ("life", "uses"):
        await state.set_state(VaultForm.life if go == "life" else VaultForm.uses)
        await state.set_data(callback_data.model_copy(update={"go": ""}).model_dump())
        await query.answer()
        if query.message is not None:
            await query.message.answer(
                "Send the lifetime, e.g. 90m, 12h, 3d (or /cancel)."
                if go == "life"
                else "Send the number of uses, e.g. 25 (or /cancel)."
            )
        return
    if go == "make":
        new = await vault.create_link(
            actor,
            item.id,
            lifetime_seconds=callback_data.life,
            max_uses=callback_data.uses,
            protect_content=bool(callback_data.prot),
            auto_delete_seconds=callback_data.ad * 60 or None,
            hide_name=bool(callback_data.hide),
        )
        await query.answer("Link created.")
        text = render.new_link_text(new, bot_username, settings.public_base_url, actor)
        if query.message is not None:
            await query.message.edit_text(text, reply_markup=None, disable_web_page_preview=True)
        return
    await query.answer()
    await edit(query, *render.wizard(item, callback_data))


async def custom_value(
    message: Message, actor: Actor, services: Services, state: FSMContext
) -> None:
    current = await state.get_state()
    data = VaultLinkNew(**await flow_data(state))
    text = (message.text or "").strip()
    if current == VaultForm.life.state:
        seconds = parse_duration(text)
        if not 60 <= seconds <= MAX_CUSTOM_DAYS * 86400:
            raise InvalidInput("A link must live between 1 minute and 365 days; send another.")
        data = data.model_copy(update={"life": seconds})
    else:
        if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 1_000_000:
            raise InvalidInput("Send a whole number of uses between 1 and 1,000,000.")
        data = data.model_copy(update={"uses": int(text)})
    await state.clear()
    item = await vault_of(services).get(actor, data.id)
    text_, markup = render.wizard(item, data)
    await message.answer(text_, reply_markup=markup)


async def rename_value(
    message: Message, actor: Actor, services: Services, state: FSMContext
) -> None:
    item_id = int((await flow_data(state))["item_id"])
    item = await vault_of(services).rename(actor, item_id, message.text or "")
    await state.clear()
    await message.answer(
        "Renamed.\n" + render.item_card(item), reply_markup=render.item_buttons(item, actor)
    )


async def cancel(message: Message, state: FSMContext) -> None:
    await state.clear()
    await message.answer("Cancelled.")


# -- /links -------------------------------------------------------------------------------------
async def links_command(message: Message, actor: Actor, services: Services) -> None:
    vault = vault_of(services)
    page = await vault.links(actor)
    clicks = await vault.click_counts(actor, [link.id for link, _ in page.rows])
    text, markup = render.links_list(page, actor, vault.clock.now(), clicks)
    await message.answer(text, reply_markup=markup)


async def links_page(
    query: CallbackQuery, callback_data: VaultLinks, actor: Actor, services: Services
) -> None:
    vault = vault_of(services)
    notice, alert = None, False
    if callback_data.revoke:
        try:
            await vault.revoke(actor, callback_data.revoke)
            notice = f"Link #{callback_data.revoke} revoked."
        except Conflict as exc:
            notice, alert = exc.message, True
    page = await vault.links(actor, page=callback_data.page)
    clicks = await vault.click_counts(actor, [link.id for link, _ in page.rows])
    await query.answer(notice, show_alert=alert)
    await edit(query, *render.links_list(page, actor, vault.clock.now(), clicks))


# -- batch links: /vault's multi-select and whole albums -------------------------------------------
PICK_PAGE = 8
PICK_ENDED = "This selection has ended. Open /vault and press Select again."


async def _picked(state: FSMContext, services: Services) -> list[int] | None:
    """The selection so far; None when this chat is not selecting (a stale button)."""
    if await state.get_state() != VaultForm.pick.state:
        return None
    return [int(i) for i in (await flow_data(state)).get("sel", [])]


async def pick_start(
    query: CallbackQuery, actor: Actor, services: Services, state: FSMContext
) -> None:
    actor.require(Role.operator, "create links")
    page = await vault_of(services).page(actor, size=PICK_PAGE, files_only=True)
    await state.set_state(VaultForm.pick)
    await state.set_data({"sel": []})
    await query.answer()
    await edit(query, *render.pick_list(page, []))


async def pick_toggle(
    query: CallbackQuery,
    callback_data: VaultPick,
    actor: Actor,
    services: Services,
    state: FSMContext,
) -> None:
    actor.require(Role.operator, "create links")
    selected = await _picked(state, services)
    if selected is None:
        await query.answer(PICK_ENDED, show_alert=True)
        return
    vault = vault_of(services)
    if callback_data.act == "t":
        item = await vault.get(actor, callback_data.id)  # this workspace's, still there
        if not item.is_file:
            raise InvalidInput(f"#{item.id} is a {item.kind}, not a file.")
        if item.id in selected:
            selected.remove(item.id)
        else:
            selected.append(item.id)
        await state.set_data({"sel": selected})
    page = await vault.page(actor, page=callback_data.page, size=PICK_PAGE, files_only=True)
    await query.answer()
    await edit(query, *render.pick_list(page, selected))


async def pick_make(
    query: CallbackQuery, actor: Actor, services: Services, state: FSMContext
) -> None:
    actor.require(Role.operator, "create links")
    selected = await _picked(state, services)
    if selected is None:
        await query.answer(PICK_ENDED, show_alert=True)
        return
    if not selected:
        await query.answer("Nothing is selected yet: tap the files to link first.", show_alert=True)
        return
    if len(selected) == 1:
        await query.answer(
            "One file: use its own Create link. A batch link needs two or more.", show_alert=True
        )
        return
    batch = await vault_of(services).create_batch(actor, selected)
    await state.clear()
    await query.answer(f"Batch #{batch.id} of {batch.name}.")
    await edit(query, *render.wizard(batch, VaultLinkNew(id=batch.id)))


async def pick_cancel(query: CallbackQuery, state: FSMContext) -> None:
    if await state.get_state() == VaultForm.pick.state:
        await state.clear()
    await query.answer("No link created.")
    await edit(query, "Selection cancelled. No link created.", None)


async def album_link(
    query: CallbackQuery, callback_data: VaultAlbum, actor: Actor, services: Services
) -> None:
    """ "Create one link for the whole album": the album's files (as many as arrived) become a
    batch, then the usual link wizard."""
    actor.require(Role.operator, "create links")
    vault = vault_of(services)
    items = await vault.album_items(actor, callback_data.g)
    if len(items) < 2:
        await query.answer(
            "This album's files are no longer here together (deleted, or another workspace's)."
            if not items
            else "Only one file of this album is left: use its own Create link.",
            show_alert=True,
        )
        return
    batch = await vault.create_batch(actor, [item.id for item in items])
    await query.answer(f"Batch #{batch.id} of {batch.name}.")
    if query.message is not None:
        text, markup = render.wizard(batch, VaultLinkNew(id=batch.id))
        await query.message.answer(text, reply_markup=markup)


# -- short links ----------------------------------------------------------------------------------
async def shorten_command(
    message: Message, command: CommandObject, actor: Actor, services: Services
) -> None:
    """`/shorten <url>`: a URL item, then the link wizard (lifetime, max clickers)."""
    actor.require(Role.operator, "create links")
    item = await vault_of(services).shorten(actor, command.args or "")
    text, markup = render.wizard(item, VaultLinkNew(id=item.id))
    await message.answer(text, reply_markup=markup, disable_web_page_preview=True)


def build_router() -> Router:
    router = Router(name="vault")
    router.message.register(claim, CommandStart(deep_link=True))
    router.message.register(cancel, Command("cancel"), StateFilter(VaultForm))
    router.message.register(custom_value, StateFilter(VaultForm.life, VaultForm.uses))
    router.message.register(rename_value, StateFilter(VaultForm.rename))
    router.message.register(vault_command, Command("vault"))
    router.message.register(links_command, Command("links"))
    router.message.register(shorten_command, Command("shorten"))
    # A file sent at /post's picture step is that post's picture: the compose flow takes it.
    router.message.register(ingest, HasVaultFile(), ~StateFilter(Compose.body))
    router.callback_query.register(item_card, VaultItemAct.filter(F.act.in_({"card", "more"})))
    router.callback_query.register(item_send, VaultItemAct.filter(F.act == "send"))
    router.callback_query.register(item_rename, VaultItemAct.filter(F.act == "rename"))
    router.callback_query.register(item_nsfw, VaultItemAct.filter(F.act == "nsfw"))
    router.callback_query.register(item_delete, VaultItemAct.filter(F.act == "delete"))
    router.callback_query.register(item_delete_yes, VaultItemAct.filter(F.act == "delete_yes"))
    router.callback_query.register(link_wizard, VaultLinkNew.filter())
    router.callback_query.register(vault_page, VaultList.filter())
    router.callback_query.register(links_page, VaultLinks.filter())
    router.callback_query.register(pick_start, VaultPick.filter(F.act == "go"))
    router.callback_query.register(pick_toggle, VaultPick.filter(F.act.in_({"t", "p"})))
    router.callback_query.register(pick_make, VaultPick.filter(F.act == "make"))
    router.callback_query.register(pick_cancel, VaultPick.filter(F.act == "x"))
    router.callback_query.register(album_link, VaultAlbum.filter())
    return router
