"""/post: compose a Reddit post step by step (FSM state is in the database, so the flow
survives a restart), and Edit: change a draft at its preview or a queued post until it runs.
Each button of the flow has its own handler, taken only at its own step."""

from __future__ import annotations

import re
from datetime import datetime

from aiogram import Bot, F, Router
from aiogram.filters import Command, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message

from bot.callbacks import RedditCompose, RedditPostAct
from bot.handlers.compose_states import Compose
from bot.handlers.jobs import edit
from bot.handlers.reddit_common import CANCEL_HINT, accounts_of, ask, posts_of
from bot.handlers.vault import ingest_file, vault_of
from bot.render.common import h, keyboard
from bot.render.reddit import edit_menu, edited_card, post_card, preview
from core.actor import Actor
from core.errors import Conflict, InvalidInput, OpsdeckError
from core.reddit_ops import WHEN_PRESETS, Level, parse_when
from core.reddit_ops.post_fields import image_file_problem, parse_subreddit
from core.services.container import Services
from storage.models import Role

IMAGE_ASK = (
    "The picture: send it here as a photo (or as an image file), or give the vault number of "
    "one already kept (e.g. #12). A picture sent here is kept in the vault too."
)
IMAGE_AGAIN = " Send a photo, an image file, or a vault number like #12."
# What a message at the picture step is, when it is not a picture (for the answer).
_NOT_A_PICTURE = (
    ("video", "a video"),
    ("animation", "an animation"),
    ("video_note", "a video message"),
    ("audio", "an audio file"),
    ("voice", "a voice message"),
    ("sticker", "a sticker"),
    ("location", "a location"),
    ("contact", "a contact"),
    ("poll", "a poll"),
)
_VAULT_NUMBER = re.compile(r"^(?:vault\s*(?:item)?\s*)?#?\s*(\d{1,12})$", re.IGNORECASE)
STALE = "This button is no longer valid."


# -- starting --------------------------------------------------------------------------------


async def post_start(message: Message, actor: Actor, services: Services, state: FSMContext):
    actor.require(Role.operator, "compose posts")
    accounts = await accounts_of(services).list(actor)
    if not accounts:
        await message.answer("No Reddit account is connected yet; connect one with /accounts add.")
        return
    await state.set_state(Compose.account)
    await state.set_data({})
    rows = [
        [
            (
                f"u/{a.username}"
                + (" (dry run)" if a.dry_run else "")
                + ("" if a.is_active else f" · {a.status}"),
                RedditCompose(step="acct", val=str(a.id)).pack(),
            )
        ]
        for a in accounts
    ]
    await ask(message, "New Reddit post. Which account posts it?", keyboard(rows))


# -- the flow's buttons, one handler per step -------------------------------------------------


async def pick_account(
    query: CallbackQuery,
    callback_data: RedditCompose,
    actor: Actor,
    services: Services,
    state: FSMContext,
) -> None:
    actor.require(Role.operator, "compose posts")
    if not callback_data.val.isascii() or not callback_data.val.isdigit():
        await query.answer(STALE, show_alert=True)
        return
    account = await accounts_of(services).get(actor, int(callback_data.val))
    await query.answer()
    await state.update_data(account_id=account.id, username=account.username)
    await state.set_state(Compose.subreddit)
    await ask(query, f"u/{h(account.username)}. Which subreddit? (e.g. r/test)")


async def pick_kind(
    query: CallbackQuery, callback_data: RedditCompose, actor: Actor, state: FSMContext
) -> None:
    actor.require(Role.operator, "compose posts")
    if callback_data.val not in (await state.get_data()).get("kinds", []):
        await query.answer("That kind is not possible here.", show_alert=True)
        return
    await query.answer()
    await state.update_data(kind=callback_data.val)
    await state.set_state(Compose.title)
    await ask(query, "The title (up to 300 characters):")


async def pick_flair(
    query: CallbackQuery,
    callback_data: RedditCompose,
    actor: Actor,
    services: Services,
    state: FSMContext,
) -> None:
    actor.require(Role.operator, "compose posts")
    data = await state.get_data()
    flairs, val = data.get("flairs", []), callback_data.val
    if val == "none":
        if data.get("flair_required"):
            await query.answer("This subreddit requires a flair.", show_alert=True)
            return
        await state.update_data(flair_id=None, flair_text=None)
    else:
        index = int(val) if val.isascii() and val.isdigit() else -1
        if not 0 <= index < len(flairs):
            await query.answer(STALE, show_alert=True)
            return
        await state.update_data(flair_id=flairs[index][0], flair_text=flairs[index][1])
    await query.answer()
    if data.get("edit"):
        fresh = await state.get_data()
        await _apply_edit(
            query.message,
            actor,
            services,
            state,
            flair_id=fresh.get("flair_id"),
            flair_text=fresh.get("flair_text"),
        )
        return
    await _ask_flags(query, state)


async def toggle_flag(
    query: CallbackQuery, callback_data: RedditCompose, actor: Actor, state: FSMContext
) -> None:
    actor.require(Role.operator, "compose posts")
    if callback_data.val not in ("nsfw", "spoiler"):
        await query.answer(STALE, show_alert=True)
        return
    data = await state.get_data()
    await state.update_data({callback_data.val: not data.get(callback_data.val, False)})
    await query.answer()
    text, markup = _flags_markup(await state.get_data())
    await edit(query, text, markup)


async def flags_done(
    query: CallbackQuery, actor: Actor, services: Services, state: FSMContext
) -> None:
    actor.require(Role.operator, "compose posts")
    data = await state.get_data()
    await query.answer()
    if data.get("edit"):
        nsfw, spoiler = bool(data.get("nsfw")), bool(data.get("spoiler"))
        await _apply_edit(query.message, actor, services, state, nsfw=nsfw, spoiler=spoiler)
        return
    await _ask_when(query, actor, state)


async def pick_when(
    query: CallbackQuery,
    callback_data: RedditCompose,
    actor: Actor,
    services: Services,
    state: FSMContext,
) -> None:
    actor.require(Role.operator, "compose posts")
    val = callback_data.val
    index = int(val) if val.isascii() and val.isdigit() else -1
    if not 0 <= index < len(WHEN_PRESETS):
        await query.answer(STALE, show_alert=True)
        return
    await query.answer()
    when = parse_when(WHEN_PRESETS[index], actor.timezone, posts_of(services).clock.now())
    if (await state.get_data()).get("edit"):
        await _edit_when(query.message, actor, services, state, when)
        return
    await _make_preview(query.message, actor, services, state, when)


async def pick_edit_field(
    query: CallbackQuery,
    callback_data: RedditCompose,
    actor: Actor,
    services: Services,
    state: FSMContext,
) -> None:
    actor.require(Role.operator, "compose posts")
    data = await state.get_data()
    val = callback_data.val
    if val == "title":
        await query.answer()
        await state.set_state(Compose.title)
        await ask(query, "The new title (up to 300 characters):")
    elif val == "body":
        await query.answer()
        await _ask_body(query, state)
    elif val == "flair":
        facts = await posts_of(services).subreddit_facts(
            actor, int(data["account_id"]), data["subreddit"]
        )
        flairs = [[f.template_id, f.text] for f in (facts.flairs or [])][:20]
        if not flairs:
            await query.answer(f"r/{data['subreddit']} offers no flairs to pick.", show_alert=True)
            return
        required = bool(facts.requirements and facts.requirements.is_flair_required)
        await query.answer()
        await state.update_data(flairs=flairs, flair_required=required)
        await _ask_flair(query, state)
    elif val == "flags":
        await query.answer()
        await _ask_flags(query, state)
    elif val == "when":
        await query.answer()
        await _ask_when(query, actor, state)
    else:
        await query.answer(STALE, show_alert=True)


async def step_over(query: CallbackQuery) -> None:
    """A button of a step the flow has left (or of a flow that ended)."""
    await query.answer("That step is over; start again with /post.", show_alert=True)


async def edit_pressed(
    query: CallbackQuery,
    callback_data: RedditPostAct,
    actor: Actor,
    services: Services,
    state: FSMContext,
) -> None:
    """Edit on a preview or a post card."""
    await _start_edit(query, callback_data.id, actor, services, state)


# -- the typed steps ---------------------------------------------------------------------------


async def compose_subreddit(
    message: Message, actor: Actor, services: Services, state: FSMContext
) -> None:
    name = parse_subreddit(message.text or "")
    data = await state.get_data()
    facts = await posts_of(services).subreddit_facts(actor, int(data["account_id"]), name)
    errors = [p for p in facts.problems if p.level == Level.error]
    if errors:
        lines = "\n".join(f"❌ {h(p.text)}" for p in errors)
        await ask(message, f"{lines}\nWhich subreddit, then?")
        return
    kinds = ["self", "link", "image"]
    about = facts.about
    if about is not None:
        allowed = {"self": about.allows_self, "link": about.allows_links}
        allowed["image"] = about.allows_images
        kinds = [k for k in kinds if allowed[k]]
        name = about.name or name
    flairs = [[f.template_id, f.text] for f in (facts.flairs or [])][:20]
    required = bool(facts.requirements and facts.requirements.is_flair_required)
    await state.update_data(subreddit=name, kinds=kinds, flairs=flairs, flair_required=required)
    await state.set_state(Compose.kind)
    labels = {"self": "Text post", "link": "Link post", "image": "Image post"}
    notes = [f"⚠️ {h(p.text)}" for p in facts.problems if p.level != Level.error]
    if about is not None and about.over18:
        notes.append(f"r/{h(name)} is NSFW: the post will be marked NSFW.")
        await state.update_data(nsfw=True)
    rows = [[(labels[k], RedditCompose(step="kind", val=k).pack())] for k in kinds]
    head = "\n".join([f"r/{h(name)} takes posts.", *notes])
    await ask(message, head + "\nWhat kind of post?", keyboard(rows))


async def compose_title(
    message: Message, actor: Actor, services: Services, state: FSMContext
) -> None:
    title = " ".join((message.text or "").split())
    if not title:
        raise InvalidInput("The title is empty; send the title.")
    if len(title) > 300:
        raise InvalidInput(f"The title has {len(title)} characters; Reddit allows 300. Shorter?")
    if (await state.get_data()).get("edit"):
        await _apply_edit(message, actor, services, state, title=title)
        return
    await state.update_data(title=title)
    await _ask_body(message, state)


async def _ask_body(target: Message | CallbackQuery, state: FSMContext) -> None:
    await state.set_state(Compose.body)
    data = await state.get_data()
    if data.get("kind") == "link":
        await ask(target, "The link (https://…):")
    elif data.get("kind") == "image":
        await ask(target, IMAGE_ASK)
    else:
        await ask(target, "The text of the post (send - for none):")


def _what_it_is(message: Message) -> str:
    found = next((label for attr, label in _NOT_A_PICTURE if getattr(message, attr, None)), None)
    if found is not None:  # before `document`: an animation carries one too
        return found
    return "a photo" if message.photo else "a file" if message.document else "that"


async def _picture_sent(
    message: Message, bot: Bot, actor: Actor, services: Services, kind: str | None
) -> dict:
    """A file sent at the body step: for an image post it goes into the vault (the same ingest
    as any file sent to the bot: hashed, sniffed, size cap, same bytes → the item already
    kept) and becomes the post's picture. Anything else is refused; the flow stays here."""
    if kind != "image":
        wanted = "the link" if kind == "link" else "the text of the post"
        raise InvalidInput(
            f"This step takes {wanted} as a message, not {_what_it_is(message)}." + CANCEL_HINT
        )
    if message.media_group_id:  # its parts arrive as separate updates, handled at once
        raise InvalidInput(
            "A post has one picture: send a single photo, not an album." + IMAGE_AGAIN + CANCEL_HINT
        )
    if message.photo:
        what, mime, size = "This photo", None, message.photo[-1].file_size
    elif message.document and not message.animation:  # Telegram sends GIFs as animations
        doc = message.document
        what, mime, size = "This file", doc.mime_type, doc.file_size
    else:
        raise InvalidInput(
            f"That is {_what_it_is(message)}, not a picture." + IMAGE_AGAIN + CANCEL_HINT
        )
    problem = image_file_problem(mime=mime, size=size, what=what)
    if problem is not None:
        raise InvalidInput(problem + IMAGE_AGAIN + CANCEL_HINT)
    try:
        result = await ingest_file(message, bot, actor, vault_of(services))
    except InvalidInput as exc:
        raise InvalidInput(exc.message + IMAGE_AGAIN + CANCEL_HINT) from None
    item = result.item
    try:
        name = await posts_of(services).check_vault_image(actor, item.id)
    except InvalidInput as exc:  # e.g. a "picture" whose bytes are a PDF
        raise InvalidInput(
            f"{exc.message} (It is kept in the vault as file #{item.id}.)"
            + IMAGE_AGAIN
            + CANCEL_HINT
        ) from None
    kept = "Already in the vault" if result.duplicate else "Kept in the vault"
    await message.answer(f"🖼 {kept} as file #{item.id} ({h(name or item.name)}): the picture.")
    return {"vault_item_id": item.id, "image_name": name, "body": None, "url": None}


async def compose_body(
    message: Message, bot: Bot, actor: Actor, services: Services, state: FSMContext
) -> None:
    data = await state.get_data()
    text = (message.text or "").strip()
    if message.text is None:
        fields = await _picture_sent(message, bot, actor, services, data.get("kind"))
    elif data.get("kind") == "image":
        found = _VAULT_NUMBER.match(text)
        if found is None:
            raise InvalidInput("That is not a vault number." + IMAGE_AGAIN + CANCEL_HINT)
        item_id = int(found.group(1))
        name = await posts_of(services).check_vault_image(actor, item_id)
        fields = {"vault_item_id": item_id, "image_name": name, "body": None, "url": None}
    elif data.get("kind") == "link":
        if not text.lower().startswith(("http://", "https://")) or " " in text:
            raise InvalidInput("A link starts with http:// or https://; send the link.")
        fields = {"url": text, "body": None}
    else:
        if len(text) > 40_000:
            raise InvalidInput(f"The text has {len(text)} characters; Reddit allows 40,000.")
        fields = {"body": None if text == "-" else text, "url": None}
    if data.get("edit"):
        await _apply_edit(message, actor, services, state, **fields)
        return
    await state.update_data(fields)
    await _ask_flair(message, state)


async def _ask_flair(target: Message | CallbackQuery, state: FSMContext) -> None:
    data = await state.get_data()
    flairs = data.get("flairs") or []
    if flairs:
        await state.set_state(Compose.flair)
        rows = [
            [(text_, RedditCompose(step="flair", val=str(i)).pack())]
            for i, (_, text_) in enumerate(flairs)
        ]
        if not data.get("flair_required"):
            rows.append([("No flair", RedditCompose(step="flair", val="none").pack())])
        need = " (required here)" if data.get("flair_required") else ""
        await ask(target, f"Flair{need}:", keyboard(rows))
        return
    await _ask_flags(target, state)


def _flags_markup(data: dict):
    nsfw, spoiler = data.get("nsfw", False), data.get("spoiler", False)
    rows = [
        [
            (f"NSFW: {'on' if nsfw else 'off'}", RedditCompose(step="flag", val="nsfw").pack()),
            (
                f"Spoiler: {'on' if spoiler else 'off'}",
                RedditCompose(step="flag", val="spoiler").pack(),
            ),
        ],
        [("Continue", RedditCompose(step="flag", val="done").pack())],
    ]
    return "Mark it NSFW or spoiler? Tap to switch, then Continue.", keyboard(rows)


async def _ask_flags(target: Message | CallbackQuery, state: FSMContext) -> None:
    await state.set_state(Compose.flags)
    text, markup = _flags_markup(await state.get_data())
    await ask(target, text, markup)


async def _ask_when(target: Message | CallbackQuery, actor: Actor, state: FSMContext) -> None:
    await state.set_state(Compose.when)
    rows = [
        [(p, RedditCompose(step="when", val=str(i)).pack())] for i, p in enumerate(WHEN_PRESETS)
    ]
    await ask(
        target,
        f"When? Pick one or type a time in your timezone ({h(actor.timezone)}), "
        "e.g. 18:30, tomorrow 09:00, +2h, 2026-12-01 14:30.",
        keyboard(rows),
    )


async def compose_when(message: Message, actor: Actor, services: Services, state: FSMContext):
    when = parse_when(message.text or "", actor.timezone, posts_of(services).clock.now())
    if (await state.get_data()).get("edit"):
        await _edit_when(message, actor, services, state, when)
        return
    await _make_preview(message, actor, services, state, when)


async def _make_preview(
    message: Message | None,
    actor: Actor,
    services: Services,
    state: FSMContext,
    when: datetime,
) -> None:
    data = await state.get_data()
    posts = posts_of(services)
    draft = await posts.create_draft(
        actor,
        account_id=int(data["account_id"]),
        subreddit=data["subreddit"],
        kind=data["kind"],
        title=data["title"],
        body=data.get("body"),
        url=data.get("url"),
        vault_item_id=data.get("vault_item_id"),
        flair_id=data.get("flair_id"),
        flair_text=data.get("flair_text"),
        nsfw=bool(data.get("nsfw")),
        spoiler=bool(data.get("spoiler")),
    )
    await _show_preview(message, actor, services, state, draft.id, when)


async def _show_preview(
    message: Message | None,
    actor: Actor,
    services: Services,
    state: FSMContext,
    post_id: int,
    when: datetime,
) -> None:
    """The preview of draft `post_id` with a fresh pre-flight (also after an Edit)."""
    posts = posts_of(services)
    report = await posts.preflight(actor, post_id)
    decision = await posts.plan(actor, post_id, when)
    draft = await posts.get(actor, post_id)
    await state.set_state(Compose.preview)
    await state.set_data({"post_id": post_id, "when": when.isoformat()})
    text, markup = preview(draft, report, decision, when, actor.timezone)
    if message is not None:
        await message.answer(text, reply_markup=markup)


async def _start_edit(
    query: CallbackQuery, post_id: int, actor: Actor, services: Services, state: FSMContext
) -> None:
    actor.require(Role.operator, "edit posts")
    view = await posts_of(services).get(actor, post_id)
    if not view.editable or view.status == "failed":
        state_ = view.status.replace("_", " ")
        await query.answer(
            f"Post #{post_id} is {state_}; it can no longer be edited.", show_alert=True
        )
        text, markup = post_card(view, actor)
        await edit(query, text, markup)
        return
    data = await state.get_data()
    when = data.get("when") if data.get("post_id") == post_id else None
    await state.set_state(Compose.edit)
    await state.set_data(
        {
            "post_id": post_id,
            "when": when,
            # a draft goes back to its preview; a queued post back to its card
            "edit": "preview" if view.status == "draft" else "card",
            "account_id": view.account_id,
            "subreddit": view.subreddit,
            "kind": view.kind,
            "nsfw": view.nsfw,
            "spoiler": view.spoiler,
        }
    )
    await query.answer()
    text, markup = edit_menu(view)
    if query.message is not None:
        await query.message.answer(text, reply_markup=markup)


async def _apply_edit(
    message: Message | None, actor: Actor, services: Services, state: FSMContext, **fields
) -> None:
    """Save one edited step, then back to the preview (draft) or the card (queued post)."""
    data = await state.get_data()
    post_id = int(data["post_id"])
    posts = posts_of(services)
    try:
        view = await posts.update(actor, post_id, **fields)
    except Conflict as exc:  # it started publishing meanwhile: stop editing, say why
        await state.clear()
        if message is not None:
            await message.answer(h(exc.message))
        return
    if data.get("edit") == "preview":
        when = datetime.fromisoformat(data["when"]) if data.get("when") else posts.clock.now()
        await _show_preview(message, actor, services, state, post_id, when)
        return
    await state.clear()
    report = await posts.preflight(actor, post_id)
    text, markup = edited_card(view, report, actor)
    if message is not None:
        await message.answer(text, reply_markup=markup)


async def _edit_when(
    message: Message | None, actor: Actor, services: Services, state: FSMContext, when: datetime
) -> None:
    data = await state.get_data()
    post_id = int(data["post_id"])
    if data.get("edit") == "preview":
        await _show_preview(message, actor, services, state, post_id, when)
        return
    try:
        result = await posts_of(services).reschedule(actor, post_id, when)
    except Conflict as exc:
        await state.clear()
        if message is not None:
            await message.answer(h(exc.message))
        return
    await state.clear()
    text, markup = post_card(result.post, actor)  # says when, and why pacing moved it
    if message is not None:
        await message.answer(text, reply_markup=markup)


async def use_buttons(message: Message) -> None:
    """Text typed where the flow waits for a button: say so instead of ignoring it."""
    await message.answer("Pick one of the buttons above." + CANCEL_HINT)


async def cancel(message: Message, actor: Actor, services: Services, state: FSMContext) -> None:
    current = await state.get_state()
    data = await state.get_data()
    await state.clear()
    if data.get("edit") == "card":
        await message.answer(f"Stopped editing; post #{data['post_id']} is unchanged.")
        return
    at_preview = current == Compose.preview.state or data.get("edit") == "preview"
    if at_preview and data.get("post_id"):
        # The preview's draft is not left behind where no list shows it.
        post_id = int(data["post_id"])
        try:
            await posts_of(services).cancel(actor, post_id)
        except OpsdeckError:
            pass  # already queued, cancelled or gone: the preview's buttons said so
        else:
            await message.answer(f"Stopped; draft #{post_id} is cancelled.")
            return
    await message.answer("Stopped; nothing was queued.")


def build_router() -> Router:
    router = Router(name="reddit_compose")
    router.message.register(cancel, Command("cancel"), StateFilter(Compose))
    router.message.register(post_start, Command("post"))
    steps = (
        ("acct", Compose.account, pick_account),
        ("kind", Compose.kind, pick_kind),
        ("flair", Compose.flair, pick_flair),
        ("when", Compose.when, pick_when),
        ("edit", Compose.edit, pick_edit_field),
    )
    for step, at, handler in steps:
        router.callback_query.register(
            handler, RedditCompose.filter(F.step == step), StateFilter(at)
        )
    router.callback_query.register(
        flags_done,
        RedditCompose.filter((F.step == "flag") & (F.val == "done")),
        StateFilter(Compose.flags),
    )
    router.callback_query.register(
        toggle_flag, RedditCompose.filter(F.step == "flag"), StateFilter(Compose.flags)
    )
    router.callback_query.register(step_over, RedditCompose.filter())
    router.callback_query.register(edit_pressed, RedditPostAct.filter(F.act == "edit"))
    router.message.register(compose_subreddit, StateFilter(Compose.subreddit))
    router.message.register(compose_title, StateFilter(Compose.title))
    router.message.register(compose_body, StateFilter(Compose.body))
    router.message.register(compose_when, StateFilter(Compose.when))
    router.message.register(
        use_buttons,
        StateFilter(
            Compose.account,
            Compose.kind,
            Compose.flair,
            Compose.flags,
            Compose.preview,
            Compose.edit,
        ),
    )
    return router
