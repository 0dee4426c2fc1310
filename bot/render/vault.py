"""Vault messages: item cards, the create-link wizard, link and item lists, stats."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from aiogram.types import InlineKeyboardMarkup

from bot.callbacks import VaultAlbum, VaultItemAct, VaultLinkNew, VaultLinks, VaultList, VaultPick
from bot.render.common import clip, h, keyboard, shorten
from core.actor import Actor
from core.vault import (
    NewLink,
    Page,
    VaultClaim,
    VaultItem,
    VaultLink,
    VaultStats,
    deep_link,
    http_link,
    human_size,
    operator_text,
)
from storage.models import Role

KIND_ICON = {
    "document": "📄",
    "photo": "🖼",
    "video": "🎬",
    "audio": "🎵",
    "voice": "🎤",
    "animation": "🎞",
    "batch": "📦",
    "url": "🌐",
}
LIFETIMES = [("1h", 3600), ("24h", 86400), ("7d", 7 * 86400), ("30d", 30 * 86400)]
USES = [1, 10, 100]
AUTO_DELETE_CYCLE = {0: 10, 10: 60, 60: 0}


def local(moment: datetime, actor: Actor) -> str:
    try:
        zone = ZoneInfo(actor.timezone)
    except Exception:  # an unknown zone name never breaks a listing
        zone = ZoneInfo("UTC")
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def duration(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{max(1, seconds // 60)}m"


def item_card(
    item: VaultItem,
    *,
    duplicate: bool = False,
    links: list[VaultLink] | None = None,
    log: list[VaultClaim] | None = None,
    actor: Actor | None = None,
    now: datetime | None = None,
    members: list[VaultItem] | None = None,
) -> str:
    lines = []
    if duplicate:
        lines.append("<b>Already in the vault</b>")
    icon = KIND_ICON.get(item.kind, "📄")
    if item.kind == "url":
        lines.append(f"{icon} <b>{h(item.name)}</b> · short link #{item.id}")
        lines.append(f"Goes to {h(shorten(item.target_url or '', 300))}")
        lines.append("Each link counts its clicks (a click in chat or a Continue on the web).")
    elif item.kind == "batch":
        lines.append(f"{icon} <b>{h(item.name)}</b> · batch #{item.id}")
        lines.append("One use of a link delivers every file below.")
        for member in members or []:
            lines.append(
                f"  {KIND_ICON.get(member.kind, '📄')} #{member.id} {h(shorten(member.name, 40))}"
                f" · {h(human_size(member.size))}"
            )
    else:
        lines.append(f"{icon} <b>{h(item.name)}</b> · file #{item.id}")
        lines.append(f"{h(item.kind)} · {h(human_size(item.size))} · {h(item.mime)}")
    if item.sha256:
        lines.append(f"sha256 <code>{h(item.sha256[:12])}</code>")
    if item.blob_key is None and item.is_file:
        lines.append("Telegram-only: the bytes could not be fetched (no HTTP download).")
    if item.nsfw:
        lines.append("🔞 NSFW")
    if item.description:
        lines.append(f"<i>{h(shorten(item.description, 300))}</i>")
    if links is not None and actor is not None and now is not None:
        lines.append("\n<b>Links</b>" if links else "\nNo links yet.")
        for link in links:
            lines.append(
                f"#{link.id} · {h(link.state(now))} · {link.used_count}/{link.max_uses} used"
                f" · until {h(local(link.expires_at, actor))}"
            )
    if log is not None and actor is not None:
        lines.append("\n<b>Recent access</b>" if log else "\nNo claims yet.")
        for claim in log:
            lines.append(
                f"{h(local(claim.at, actor))} · {h(claim.channel)} {h(claim.claimer_id)}"
                f" · {h(operator_text(claim.outcome))}"
            )
    return clip("\n".join(lines))


def item_buttons(
    item: VaultItem, actor: Actor, *, more: bool = True, album: str | None = None
) -> InlineKeyboardMarkup:
    rows: list[list[tuple[str, str]]] = []
    if album and actor.at_least(Role.operator) and len(album) <= 40:
        rows.append([("📦 Create one link for the whole album", VaultAlbum(g=album).pack())])
    if actor.at_least(Role.operator):
        rows.append(
            [
                ("🔗 Create link", VaultLinkNew(id=item.id).pack()),
                ("📨 Send to me", VaultItemAct(act="send", id=item.id).pack()),
            ]
        )
        rows.append(
            [
                ("✏️ Rename", VaultItemAct(act="rename", id=item.id).pack()),
                ("🔞 NSFW", VaultItemAct(act="nsfw", id=item.id).pack()),
                ("🗑 Delete", VaultItemAct(act="delete", id=item.id).pack()),
            ]
        )
    else:
        rows.append([("📨 Send to me", VaultItemAct(act="send", id=item.id).pack())])
    if more:
        rows.append([("📜 Links & log", VaultItemAct(act="more", id=item.id).pack())])
    markup = keyboard(rows)
    assert markup is not None
    return markup


def delete_question(item: VaultItem) -> tuple[str, InlineKeyboardMarkup | None]:
    return (
        f"Delete <b>{h(item.name)}</b> (file #{item.id})? Its links stop working.",
        keyboard(
            [
                [
                    ("Yes, delete", VaultItemAct(act="delete_yes", id=item.id).pack()),
                    ("No", VaultItemAct(act="card", id=item.id).pack()),
                ]
            ]
        ),
    )


def wizard(item: VaultItem, state: VaultLinkNew) -> tuple[str, InlineKeyboardMarkup | None]:
    """One step of the create-link wizard, from the choices made so far."""
    head = f"🔗 New link for <b>{h(item.name)}</b>"
    if item.kind == "url":
        head = f"🔗 New short link to <b>{h(item.name)}</b>"
    elif item.kind == "batch":
        head = f"🔗 New link for a batch of <b>{h(item.name)}</b>"

    def with_(**changes: object) -> str:
        return state.model_copy(update={"go": "", **changes}).pack()

    cancel = ("✖ Cancel", state.model_copy(update={"go": "x"}).pack())
    if not state.life:
        rows = [[(label, with_(life=s)) for label, s in LIFETIMES]]
        rows.append([("Custom…", state.model_copy(update={"go": "life"}).pack()), cancel])
        return f"{head}\nHow long should it work?", keyboard(rows)
    if not state.uses:
        rows = [[(str(n), with_(uses=n)) for n in USES]]
        rows.append([("Custom…", state.model_copy(update={"go": "uses"}).pack()), cancel])
        return f"{head}\nLifetime {duration(state.life)}. How many uses?", keyboard(rows)
    if item.kind == "url":  # nothing is sent to protect or delete: the click is the use
        text = f"{head}\nLifetime <b>{duration(state.life)}</b> · max clickers <b>{state.uses}</b>"
        rows = [[("✅ Create link", state.model_copy(update={"go": "make"}).pack()), cancel]]
        return text, keyboard(rows)
    auto = f"{state.ad} min" if state.ad else "off"
    text = (
        f"{head}\nLifetime <b>{duration(state.life)}</b> · max uses <b>{state.uses}</b>\n"
        f"Protect content: <b>{'on' if state.prot else 'off'}</b> · "
        f"auto-delete: <b>{auto}</b>\n"
        f"Name on the web page: <b>{'hidden' if state.hide else 'shown'}</b>"
    )
    rows = [
        [
            (f"🔒 Protect: {'on' if state.prot else 'off'}", with_(prot=1 - state.prot)),
            (f"⏲ Auto-delete: {auto}", with_(ad=AUTO_DELETE_CYCLE.get(state.ad, 0))),
        ],
        [(f"🙈 Web page name: {'hidden' if state.hide else 'shown'}", with_(hide=1 - state.hide))],
        [("✅ Create link", state.model_copy(update={"go": "make"}).pack()), cancel],
    ]
    return text, keyboard(rows)


def new_link_text(new: NewLink, bot_username: str, public_base_url: str, actor: Actor) -> str:
    link = new.link
    if new.item.kind == "url":
        return (
            f"✅ Short link #{link.id} to <b>{h(new.item.name)}</b>\n"
            f"Works until {h(local(link.expires_at, actor))} ({h(actor.timezone)}), "
            f"for {link.max_uses} different people; every click is counted (/links).\n\n"
            f"Web: {h(http_link(public_base_url, new.code))}\n"
            f"Telegram: {h(deep_link(bot_username, new.code))}\n\n"
            "These links are shown only once."
        )
    auto = f"{link.auto_delete_seconds // 60} min" if link.auto_delete_seconds else "off"
    return (
        f"✅ Link #{link.id} for <b>{h(new.item.name)}</b>\n"
        f"Works until {h(local(link.expires_at, actor))} ({h(actor.timezone)}), "
        f"{link.max_uses} use(s); protect content {'on' if link.protect_content else 'off'}, "
        f"auto-delete {auto}{'; name hidden on the web page' if link.hide_name else ''}.\n\n"
        f"Telegram: {h(deep_link(bot_username, new.code))}\n"
        f"HTTP: {h(http_link(public_base_url, new.code))}\n\n"
        "These links are shown only once."
    )


def links_list(
    page: Page[tuple[VaultLink, VaultItem]],
    actor: Actor,
    now: datetime,
    clicks: dict[int, int] | None = None,
) -> tuple[str, InlineKeyboardMarkup | None]:
    if not page.total:
        return (
            "No active links. Create one from a file card (/vault), select several files "
            "there for one link, or shorten an address with /shorten.",
            None,
        )
    lines = [f"<b>Active links</b> ({page.total}) · times in {h(actor.timezone)}"]
    rows: list[list[tuple[str, str]]] = []
    for link, item in page.rows:
        icon = KIND_ICON.get(item.kind, "📄")
        counted = ""
        if item.kind == "url":
            counted = f" · {(clicks or {}).get(link.id, 0)} click(s) by {link.used_count}"
        lines.append(
            f"#{link.id} · {icon} {h(shorten(item.name, 40))} · {link.uses_left} of "
            f"{link.max_uses} left{counted} · until {h(local(link.expires_at, actor))}"
        )
        if actor.at_least(Role.operator):
            rows.append(
                [(f"⛔ Revoke #{link.id}", VaultLinks(page=page.page, revoke=link.id).pack())]
            )
    rows.append(_pager(page, lambda p: VaultLinks(page=p).pack()))
    return clip("\n".join(lines)), keyboard(rows)


def items_list(
    page: Page[VaultItem], kind: str, nsfw: str
) -> tuple[str, InlineKeyboardMarkup | None]:
    filt = " · ".join(x for x in (kind, {"y": "NSFW", "n": "not NSFW"}.get(nsfw, "")) if x)
    lines = [f"<b>Vault</b> · {page.total} item(s)" + (f" · {h(filt)}" if filt else "")]
    if not page.total:
        lines.append("Nothing here. Send me a file to add it, or /shorten an address.")
    rows: list[list[tuple[str, str]]] = []
    for item in page.rows:
        icon = KIND_ICON.get(item.kind, "📄")
        mark = " 🔞" if item.nsfw else ""
        label = f"{icon} #{item.id} {shorten(item.name, 30)}{mark}"
        rows.append([(label, VaultItemAct(act="more", id=item.id).pack())])
    kinds = [("All", "")] + [(KIND_ICON[k], k) for k in KIND_ICON]
    buttons = [
        (("·" + label + "·") if k == kind else label, VaultList(kind=k, nsfw=nsfw).pack())
        for label, k in kinds
    ]
    rows += [buttons[:5], buttons[5:]]  # Telegram takes at most 8 buttons a row
    next_nsfw = {"": "n", "n": "y", "y": ""}[nsfw if nsfw in ("y", "n") else ""]
    nsfw_label = {"": "NSFW: any", "n": "NSFW: hidden", "y": "NSFW: only"}[nsfw or ""]
    rows.append([(nsfw_label, VaultList(kind=kind, nsfw=next_nsfw).pack())])
    rows.append(_pager(page, lambda p: VaultList(kind=kind, nsfw=nsfw, page=p).pack()))
    rows.append([("☑️ Select files for one link", VaultPick(act="go").pack())])
    return "\n".join(lines), keyboard(rows)


def pick_list(
    page: Page[VaultItem], selected: list[int]
) -> tuple[str, InlineKeyboardMarkup | None]:
    """/vault's multi-select: tick files, then one link for all of them."""
    lines = [
        f"<b>Select files for one link</b> · {len(selected)} selected",
        "Tap files to tick them; one use of the link delivers them all.",
    ]
    if not page.total:
        lines.append("There are no files to select. Send me some first.")
    rows: list[list[tuple[str, str]]] = []
    for item in page.rows:
        tick = "☑" if item.id in selected else "☐"
        icon = KIND_ICON.get(item.kind, "📄")
        label = f"{tick} {icon} #{item.id} {shorten(item.name, 30)}"
        rows.append([(label, VaultPick(act="t", id=item.id, page=page.page).pack())])
    rows.append(_pager(page, lambda p: VaultPick(act="p", page=p).pack()))
    rows.append(
        [
            (f"🔗 Create link for all {len(selected)}", VaultPick(act="make").pack()),
            ("✖ Cancel", VaultPick(act="x").pack()),
        ]
    )
    return "\n".join(lines), keyboard(rows)


def stats_text(stats: VaultStats) -> str:
    lines = [
        f"<b>Vault stats</b>: {stats.items} file(s), {h(human_size(stats.bytes))}, "
        f"{stats.active_links} active link(s)"
    ]
    for kind, s in sorted(stats.by_kind.items()):
        extra = f", {s.telegram_only} Telegram-only" if s.telegram_only else ""
        lines.append(
            f"{KIND_ICON.get(kind, '📄')} {h(kind)}: {s.count}, {h(human_size(s.bytes))}{extra}"
        )
    return "\n".join(lines)


def _pager(page: Page, pack) -> list[tuple[str, str]]:
    row = []
    if page.page > 0:
        row.append(("◀", pack(page.page - 1)))
    if page.pages > 1:
        row.append((f"{page.page + 1}/{page.pages}", pack(page.page)))
    if page.page + 1 < page.pages:
        row.append(("▶", pack(page.page + 1)))
    return row
