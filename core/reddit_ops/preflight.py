"""Pre-flight: check a post against a subreddit's rules before it is queued.

`check_post` is pure: it takes the post and what Reddit said about the subreddit
(`/api/v1/{sr}/post_requirements`, `/r/{sr}/about`, the account's flair choices) and returns
findings in plain words. `fetch_subreddit` gathers that data with a client, and turns a missing
or closed subreddit into a finding instead of an exception.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import urlsplit

from core.reddit import (
    FlairChoice,
    PostRequirements,
    RedditClient,
    RedditForbidden,
    RedditNotFound,
    SubredditAbout,
)

TITLE_MAX = 300  # Reddit's own limit, whatever the subreddit says
FLAIR_TEXT_MAX = 64
COMMENT_MAX = 10_000  # Reddit's limit for a comment


class Level(StrEnum):
    ok = "ok"
    warn = "warn"
    error = "error"


@dataclass(frozen=True, slots=True)
class Finding:
    level: Level
    code: str
    text: str


@dataclass(frozen=True, slots=True)
class Draft:
    """What pre-flight needs to know about a post."""

    subreddit: str
    kind: str  # self | link | image
    title: str
    body: str | None = None
    url: str | None = None
    has_image: bool = False
    flair_id: str | None = None
    flair_text: str | None = None
    nsfw: bool = False
    spoiler: bool = False


@dataclass(frozen=True, slots=True)
class SubredditFacts:
    """What Reddit said about a subreddit; None where it could not be read."""

    name: str
    about: SubredditAbout | None = None
    requirements: PostRequirements | None = None
    flairs: list[FlairChoice] | None = None
    problems: list[Finding] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class PreflightReport:
    findings: list[Finding]

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == Level.error]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == Level.warn]

    @property
    def ok(self) -> bool:
        """No errors (warnings allowed)."""
        return not self.errors

    def summary(self) -> str:
        """The findings as one plain-text block, errors first."""
        marks = {Level.error: "✗", Level.warn: "!", Level.ok: "✓"}
        order = {Level.error: 0, Level.warn: 1, Level.ok: 2}
        lines = sorted(self.findings, key=lambda f: order[f.level])
        return "\n".join(f"{marks[f.level]} {f.text}" for f in lines)


def _err(code: str, text: str) -> Finding:
    return Finding(Level.error, code, text)


def _warn(code: str, text: str) -> Finding:
    return Finding(Level.warn, code, text)


def _quote(values: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(f"“{v}”" for v in values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def domain_of(url: str) -> str | None:
    """The host of an http(s) URL, lowercased, without `www.`; None if it is not one."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname.lower().rstrip(".")
    return host.removeprefix("www.")


def _domain_in(domain: str, listed: Sequence[str]) -> bool:
    """`domain` is one of `listed` or a subdomain of one."""
    for entry in listed:
        entry = entry.strip().lower().removeprefix("www.")
        if entry and (domain == entry or domain.endswith("." + entry)):
            return True
    return False


def _regex_findings(
    text: str, patterns: Sequence[str], what: str, code: str, sr: str
) -> list[Finding]:
    """Reddit's `*_regexes`: the text must match at least one of them."""
    compiled = []
    broken = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error:
            broken.append(pattern)
    out: list[Finding] = []
    if broken:
        out.append(
            _warn(
                code + "_UNCHECKED",
                f"r/{sr} has a {what} pattern Opsdeck cannot check ({_quote(broken, 2)}); "
                "Reddit will check it on submit",
            )
        )
    if compiled and not any(p.search(text) for p in compiled):
        shown = _quote([p.pattern for p in compiled], 3)
        out.append(_err(code, f"the {what} does not match the pattern r/{sr} requires ({shown})"))
    return out


def check_post(draft: Draft, facts: SubredditFacts | None = None) -> list[Finding]:
    """Every problem `draft` has against Reddit's limits and the subreddit's rules."""
    sr = facts.name if facts is not None else draft.subreddit
    found: list[Finding] = []
    if facts is not None:
        found.extend(facts.problems)
    title = draft.title or ""
    body = (draft.body or "").strip()

    # -- the post itself (Reddit's own limits) --------------------------------------------
    if draft.kind == "comment":  # a reply: its thread is checked when composed and sent
        if not body:
            found.append(_err("NO_TEXT", "the comment is empty"))
        elif len(body) > COMMENT_MAX:
            found.append(
                _err("TOO_LONG", f"the comment has {len(body)} characters; Reddit allows 10,000")
            )
        return found
    if draft.kind not in ("self", "link", "image"):
        found.append(_err("KIND", f"unknown post kind “{draft.kind}”"))
    if not title.strip():
        found.append(_err("TITLE_EMPTY", "the title is empty"))
    if len(title) > TITLE_MAX:
        found.append(
            _err("TITLE_TOO_LONG", f"the title has {len(title)} characters; Reddit allows 300")
        )
    if draft.kind == "link":
        if not draft.url:
            found.append(_err("NO_URL", "a link post needs a link"))
        elif domain_of(draft.url) is None:
            found.append(_err("BAD_URL", "the link is not a web address (http:// or https://)"))
    if draft.kind == "image" and not draft.has_image:
        found.append(_err("NO_IMAGE", "an image post needs an image"))
    if draft.flair_text and len(draft.flair_text) > FLAIR_TEXT_MAX:
        found.append(_err("FLAIR_TOO_LONG", "the flair text is longer than Reddit's 64 characters"))

    if facts is None:
        return found
    about, req, flairs = facts.about, facts.requirements, facts.flairs

    # -- what the subreddit takes -----------------------------------------------------------
    if about is not None:
        if about.user_is_banned:
            found.append(_err("BANNED", f"this account is banned from r/{sr}"))
        if draft.kind == "self" and not about.allows_self:
            found.append(_err("NO_SELFS", f"r/{sr} does not take text posts (links only)"))
        if draft.kind in ("link", "image") and not about.allows_links:
            found.append(_err("NO_LINKS", f"r/{sr} takes text posts only"))
        if draft.kind == "image" and about.allows_links and not about.allow_images:
            found.append(_err("NO_IMAGES", f"r/{sr} does not allow image posts"))
        if about.over18 and not draft.nsfw:
            # Reddit marks every post to an 18+ community NSFW itself: not a reason to refuse
            found.append(
                _warn(
                    "NSFW_MARKED_BY_REDDIT",
                    f"r/{sr} is an 18+ community: Reddit will mark the post NSFW",
                )
            )
        if about.subreddit_type == "restricted":
            found.append(
                _warn("RESTRICTED", f"r/{sr} is restricted: only approved accounts may post")
            )

    # -- post requirements ----------------------------------------------------------------
    if req is not None:
        lowered = title.lower()
        low, high = req.title_text_min_length, req.title_text_max_length
        if low and len(title) < low:
            found.append(
                _err("TITLE_MIN_LENGTH", f"r/{sr} wants titles of at least {low} characters")
            )
        if high and len(title) > high:
            found.append(
                _err("TITLE_MAX_LENGTH", f"r/{sr} wants titles of at most {high} characters")
            )
        required = [s for s in req.title_required_strings if s]
        if required and not any(s.lower() in lowered for s in required):
            found.append(
                _err(
                    "TITLE_REQUIRED_STRINGS",
                    f"the title must contain one of {_quote(required)} (r/{sr})",
                )
            )
        banned = [s for s in req.title_blacklisted_strings if s and s.lower() in lowered]
        if banned:
            found.append(
                _err(
                    "TITLE_BLACKLISTED_STRING",
                    f"r/{sr} does not allow {_quote(banned)} in the title",
                )
            )
        found.extend(_regex_findings(title, req.title_regexes, "title", "TITLE_REGEX", sr))

        policy = req.body_restriction_policy
        if policy == "required" and not body:
            if draft.kind == "self":
                found.append(_err("BODY_REQUIRED", f"r/{sr} requires a text body"))
            else:
                found.append(
                    _warn(
                        "BODY_REQUIRED",
                        f"r/{sr} asks for a text body, which a {draft.kind} post does not have",
                    )
                )
        if policy == "notAllowed" and body:
            found.append(_err("BODY_NOT_ALLOWED", f"r/{sr} does not allow a text body"))
        if body and draft.kind == "self":
            blow, bhigh = req.body_text_min_length, req.body_text_max_length
            if blow and len(body) < blow:
                found.append(
                    _err("BODY_MIN_LENGTH", f"r/{sr} wants a body of at least {blow} characters")
                )
            if bhigh and len(body) > bhigh:
                found.append(
                    _err("BODY_MAX_LENGTH", f"r/{sr} wants a body of at most {bhigh} characters")
                )
            body_lower = body.lower()
            brequired = [s for s in req.body_required_strings if s]
            if brequired and not any(s.lower() in body_lower for s in brequired):
                found.append(
                    _err(
                        "BODY_REQUIRED_STRINGS",
                        f"the body must contain one of {_quote(brequired)} (r/{sr})",
                    )
                )
            bbanned = [s for s in req.body_blacklisted_strings if s and s.lower() in body_lower]
            if bbanned:
                found.append(
                    _err(
                        "BODY_BLACKLISTED_STRING",
                        f"r/{sr} does not allow {_quote(bbanned)} in the body",
                    )
                )
            found.extend(_regex_findings(body, req.body_regexes, "body", "BODY_REGEX", sr))

        if draft.kind == "link" and draft.url:
            domain = domain_of(draft.url)
            if domain is not None:
                if _domain_in(domain, req.domain_blacklist):
                    found.append(
                        _err("DOMAIN_BLACKLISTED", f"r/{sr} does not allow links to {domain}")
                    )
                whitelist = [d for d in req.domain_whitelist if d]
                if whitelist and not _domain_in(domain, whitelist):
                    found.append(
                        _err(
                            "DOMAIN_NOT_WHITELISTED",
                            f"r/{sr} only allows links to {_quote(whitelist)}, not {domain}",
                        )
                    )
            if req.link_repost_age:
                found.append(
                    _warn(
                        "REPOST_AGE",
                        f"r/{sr} refuses a link posted there in the last "
                        f"{req.link_repost_age} days",
                    )
                )

    # -- flair ----------------------------------------------------------------------------
    flair_required = bool(req and req.is_flair_required)
    if flair_required and not draft.flair_id:
        if flairs:
            names = [f.text for f in flairs if f.text]
            found.append(
                _err("FLAIR_REQUIRED", f"r/{sr} requires a flair; pick one of {_quote(names)}")
            )
        else:
            found.append(_err("FLAIR_REQUIRED", f"r/{sr} requires a flair on every post"))
    if draft.flair_id and flairs is not None:
        choice = next((f for f in flairs if f.template_id == draft.flair_id), None)
        if choice is None:
            found.append(_err("FLAIR_UNKNOWN", f"that flair is not available in r/{sr}"))
        elif draft.flair_text and draft.flair_text != choice.text and not choice.text_editable:
            found.append(
                _warn(
                    "FLAIR_NOT_EDITABLE",
                    f"the flair “{choice.text}” cannot be edited; its own text will be used",
                )
            )

    if not any(f.level == Level.error for f in found):
        if req is not None:
            text = f"passes r/{sr}'s title, body, link and flair rules"
        else:
            text = "passes Reddit's own limits"
        found.append(Finding(Level.ok, "PASSED", text))
    if req is not None and req.guidelines_text:
        found.append(Finding(Level.ok, "GUIDELINES", f"r/{sr} guidelines: {req.guidelines_text}"))
    return found


async def fetch_subreddit(
    client: RedditClient, subreddit: str, *, with_flairs: bool = True
) -> SubredditFacts:
    """Read what pre-flight needs about `subreddit` (3 requests: about, requirements, flairs).

    A subreddit that does not exist or that this account cannot see becomes an error finding.
    """
    try:
        about = await client.subreddit_about(subreddit)
    except RedditNotFound:
        return SubredditFacts(
            name=subreddit,
            problems=[_err("SUBREDDIT_NOEXIST", f"r/{subreddit} does not exist")],
        )
    except RedditForbidden as exc:
        return SubredditFacts(name=subreddit, problems=[_err("SUBREDDIT_NO_ACCESS", exc.message)])
    name = about.name or subreddit
    problems: list[Finding] = []
    requirements: PostRequirements | None
    try:
        requirements = await client.post_requirements(name)
    except (RedditNotFound, RedditForbidden) as exc:
        requirements = None
        problems.append(_warn("REQUIREMENTS_UNREADABLE", f"could not read r/{name}'s rules: {exc}"))
    flairs: list[FlairChoice] | None = None
    if with_flairs:
        try:
            flairs = await client.flair_choices(name)
        except (RedditNotFound, RedditForbidden):
            flairs = None
    return SubredditFacts(
        name=name, about=about, requirements=requirements, flairs=flairs, problems=problems
    )


async def preflight(client: RedditClient | None, draft: Draft) -> PreflightReport:
    """Fetch the subreddit's rules with `client` and check `draft` against them.

    Without a client (an account with no credentials) only Reddit's own limits are checked,
    and a warning says so.
    """
    if client is None:
        findings = check_post(draft, None)
        findings.insert(
            0,
            _warn(
                "RULES_UNCHECKED",
                f"without Reddit credentials r/{draft.subreddit}'s rules cannot be read; "
                "only Reddit's own limits were checked",
            ),
        )
        return PreflightReport(findings)
    facts = await fetch_subreddit(client, draft.subreddit)
    return PreflightReport(check_post(draft, facts))
