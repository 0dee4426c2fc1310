"""A simulated Reddit day against the fake Reddit, in virtual time.

    python -m bench.reddit_day                 # the full day (200 posts)
    python -m bench.reddit_day --posts 60      # smaller, for a smoke run

Three accounts share one OAuth client id; the fake enforces 100 requests per minute per
client id (and Reddit's 1000 per 10 minutes in its headers) and answers 429 beyond that.
The run:

* at 00:00 the operators compose 200 posts for the day, each checked by pre-flight
  (about + post_requirements + flairs = 3 requests a post, 600 in a burst) and queued with
  pacing: 70 posts a day and 15 min between posts per account, 30 min between the team's
  posts to each of 10 subreddits;
* the history (600 posts each) and inbox (1,000 messages each) backfills run at once;
* the periodic jobs run all day: inbox every 10 min, stats refresh hourly (7 days, batches
  of 100), health checks every 6 h;
* Reddit misbehaves: three RATELIMIT answers, one submit that times out after Reddit created
  the post, two posts removed by moderators, new inbox messages every hour;
* comments: at 00:00 the operators also reply to 30 threads of other people (`/reply`: the
  thread is read, the comment drafted and queued through the same queue and pacing as the
  posts); Reddit answers two of them `RATELIMIT` and one times out after it made the comment;
* browsing: every 20 minutes an operator reads a subreddit's hot page and opens a thread
  (`/browse`), through the same shared budget.

The fake, the clients, the services and the jobs share one `VirtualTime`: waiting (pacing,
retries, the schedule) moves the clock, so the day takes seconds of wall time. Jobs live in
the real `jobs` table of a SQLite database and are claimed with the engine's own atomic claim;
`VirtualRunner` applies the engine's outcome rules, and a loop stands in for APScheduler by
jumping the virtual clock to the next due job, periodic run or event.

Checked at the end (the process exits 1 if any fails): zero 429s, at most 100 requests in
any 60 s, no pacing rule broken (from the fake's own creation times, comments included),
every post and every comment published exactly once.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import logging
import random
import statistics
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from core.actor import Actor
from core.crypto import SecretBox
from core.jobs.backoff import retry_delay
from core.jobs.context import JobContext
from core.jobs.queue import enqueue
from core.jobs.registry import JobRegistry, PermanentFailure, RetryLater
from core.notifier import RecordingNotifier
from core.reddit import RateBudgetRegistry
from core.reddit_ops import (
    BACKFILL_SUBMISSIONS,
    DEP_BLOBS,
    DEP_CLIENTS,
    DEP_UOW,
    INBOX,
    REDDIT_PERIODIC,
    AccountService,
    PostService,
    RedditClients,
    register_reddit_jobs,
)
from core.reddit_ops.browse import BrowseService
from core.reddit_ops.comments import CommentService, parse_reply_link
from core.services.jobs import JobService
from core.settings import JobSettings
from storage import migrate
from storage.blobs import LocalBlobStore
from storage.db import create_engine, create_sessionmaker
from storage.models import Job, JobStatus, Operator, Role
from storage.reddit_models import PostStatus, RedditInboxMessage, RedditPost
from storage.repositories import jobs as job_repo
from storage.repositories import tenants as tenant_repo
from storage.repositories.jobs import ClaimedJob
from storage.uow import UnitOfWork
from tests.fakes.reddit import FakeReddit, VirtualTime

APP = "opsdeck-bench-app"
SECRET = "opsdeck-bench-secret"
ACCOUNTS = ("alice", "bob", "carol")
SUBREDDITS = tuple(f"benchsub{n}" for n in range(10))
POSTS_PER_DAY = 80  # posts and comments together (comments share the queue's pacing)
ACCOUNT_GAP = timedelta(minutes=15)
SUBREDDIT_GAP = timedelta(minutes=30)
LIMIT_PER_MINUTE = 100
HISTORY_POSTS = 600  # per account, one every 2 hours
INBOX_MESSAGES = 1000  # per account
START = datetime(2026, 6, 1, 0, 0, tzinfo=UTC)
OUTSIDER = "dave"  # someone else on Reddit, whose threads the team replies to
BROWSE_EVERY = timedelta(minutes=20)
DAY = timedelta(hours=24)


@dataclass
class Timeline:
    """Things that happen to Reddit during the day, at virtual times."""

    events: list[tuple[datetime, str, Any]] = field(default_factory=list)

    def add(self, at: datetime, what: str, arg: Any = None) -> None:
        bisect.insort(self.events, (at, what, arg), key=lambda e: e[0])

    def next_time(self) -> datetime | None:
        return self.events[0][0] if self.events else None

    def due(self, now: datetime) -> list[tuple[datetime, str, Any]]:
        out = []
        while self.events and self.events[0][0] <= now:
            out.append(self.events.pop(0))
        return out


class VirtualRunner:
    """The job engine's claim-and-outcome rules, driven by the bench loop on virtual time.

    `JobEngine` times its work with APScheduler on the wall clock; here the loop jumps the
    virtual clock instead, so this runs claimed jobs the way the engine does: the same
    atomic claim (`job_repo.claim`), RetryLater → queued again at its time without counting
    the attempt, PermanentFailure → dead, other errors → retried with the engine's backoff.
    """

    def __init__(
        self,
        sessionmaker: Any,
        registry: JobRegistry,
        vt: VirtualTime,
        notifier: RecordingNotifier,
        deps: dict[str, Any],
        *,
        concurrency: int,
        rng: random.Random,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.registry = registry
        self.vt = vt
        self.notifier = notifier
        self.deps = deps
        self.concurrency = concurrency
        self.rng = rng
        self.settings = JobSettings(_env_file=None)  # type: ignore[call-arg]

    async def run_due(self) -> int:
        async with self.sessionmaker() as session, session.begin():
            claimed = await job_repo.claim(
                session,
                worker="bench",
                now=self.vt.now(),
                lease=timedelta(seconds=self.settings.lease_seconds),
                limit=self.concurrency,
            )
        await asyncio.gather(*(self._run(job) for job in claimed))
        return len(claimed)

    async def _run(self, job: ClaimedJob) -> None:
        kind = self.registry.get(job.kind)
        assert kind is not None, job.kind
        ctx = JobContext(
            job_id=job.id,
            tenant_id=job.tenant_id,
            kind=job.kind,
            payload=dict(job.payload or {}),
            attempt=job.attempts,
            max_attempts=job.max_attempts,
            sessionmaker=self.sessionmaker,
            clock=self.vt.clock,
            notifier=self.notifier,
            deps=self.deps,
        )
        now = self.vt.now
        values: dict[str, Any]
        try:
            result = await kind.handler(ctx)
        except RetryLater as exc:
            values = {
                "status": JobStatus.queued,
                "run_at": now() + timedelta(seconds=exc.seconds),
                "attempts": job.attempts - 1,
                "last_error": f"rescheduled: {exc.message}",
            }
        except PermanentFailure as exc:
            values = {"status": JobStatus.dead, "last_error": exc.message, "finished_at": now()}
        except Exception as exc:
            if job.attempts >= job.max_attempts:
                values = {"status": JobStatus.dead, "last_error": repr(exc), "finished_at": now()}
            else:
                delay = retry_delay(
                    job.attempts,
                    self.settings.backoff_base_seconds,
                    self.settings.backoff_cap_seconds,
                    self.rng,
                )
                values = {
                    "status": JobStatus.failed,
                    "run_at": now() + timedelta(seconds=delay),
                    "last_error": repr(exc),
                }
        else:
            values = {"status": JobStatus.succeeded, "result": result, "finished_at": now()}
        values["updated_at"] = now()
        async with self.sessionmaker() as session, session.begin():
            await job_repo.finish(session, job_id=job.id, worker="bench", values=values)

    async def enqueue_periodic(self, spec: Any, tenant_id: int) -> None:
        now = self.vt.now()
        slot = int(now.timestamp() // (spec.seconds or 60) * (spec.seconds or 60))
        async with self.sessionmaker() as session, session.begin():
            await enqueue(
                session,
                tenant_id=tenant_id,
                kind=spec.kind,
                now=now,
                payload=dict(spec.payload),
                dedupe_key=f"periodic:{spec.name}:{slot}",
            )

    async def next_wakeup(self) -> datetime | None:
        async with self.sessionmaker() as session:
            return await job_repo.next_wakeup(session, self.vt.now())


async def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING)
    rng = random.Random(args.seed)
    vt = VirtualTime(START)
    wall = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="reddit-day-"))

    fake = FakeReddit(clock=vt)
    await fake.start()
    fake.enforce_limit(LIMIT_PER_MINUTE, 60)
    for name in ACCOUNTS:
        fake.add_account(name, f"{name}-pw", APP, SECRET)
        first = START.timestamp() - HISTORY_POSTS * 7200
        for n in range(HISTORY_POSTS):
            fake.add_post(
                name, SUBREDDITS[n % 10], f"{name} history {n}", created_utc=first + n * 7200
            )
        first = START.timestamp() - INBOX_MESSAGES * 600
        for n in range(INBOX_MESSAGES):
            fake.add_inbox_message(
                name,
                author=f"fan{n}",
                body=f"message {n}",
                created_utc=first + n * 600,
                new=n >= INBOX_MESSAGES - 3,
            )
    for sub in SUBREDDITS:
        fake.add_subreddit(sub, flairs=["Discussion", "News"])
    fake.add_account(OUTSIDER, "dave-pw", "daves-own-app", "daves-secret")
    threads = []
    for n in range(max(args.comments, 1)):
        thread = fake.add_post(
            OUTSIDER, SUBREDDITS[n % 10], f"{OUTSIDER} asks {n}", text=f"Question {n}?"
        )
        thread.created_utc = START.timestamp() - 3600 * (n + 1)
        threads.append(thread)

    db = create_engine(f"sqlite+aiosqlite:///{tmp / 'opsdeck.db'}")
    await migrate.upgrade(db)
    sessionmaker = create_sessionmaker(db)
    uow = UnitOfWork(db)
    notifier = RecordingNotifier()
    box = SecretBox(b"bench-master-key")
    budgets = RateBudgetRegistry(clock=vt, sleep=vt.sleep)
    clients = RedditClients(
        fake.client_config(timeout=1.0, image_lookup_delay=1.0),
        budgets,
        box,
        clock=vt,
        sleep=vt.sleep,
        rng=random.Random(args.seed),
    )
    async with sessionmaker() as session:
        tenant = await tenant_repo.create(session, "owner", "Owner workspace", START)
        op = Operator(
            tenant_id=tenant.id,
            telegram_user_id=1,
            role=Role.owner,
            display_name="Bench",
            timezone="UTC",
            notify=True,
            created_at=START,
        )
        session.add(op)
        await session.flush()
        actor = Actor(op.id, 1, tenant.id, Role.owner, "UTC", "Bench")
        await session.commit()

    registry = JobRegistry()
    register_reddit_jobs(registry)
    runner = VirtualRunner(
        sessionmaker,
        registry,
        vt,
        notifier,
        {
            DEP_CLIENTS: clients,
            DEP_BLOBS: LocalBlobStore(tmp / "blobs", fsync=False),
            DEP_UOW: uow,
        },
        concurrency=args.concurrency,
        rng=random.Random(args.seed),
    )

    # -- 00:00: accounts, pacing, 200 posts composed with pre-flight and queued --------------
    account_ids: dict[str, int] = {}
    jobs = JobService(uow, vt.clock, notifier, registry=registry)
    accounts = AccountService(uow, vt.clock, box, jobs=jobs, clients=clients)
    posts = PostService(uow, vt.clock, jobs, clients=clients)
    for name in ACCOUNTS:
        view = await accounts.add(
            actor,
            username=name,
            client_id=APP,
            client_secret=SECRET,
            password=f"{name}-pw",
            posts_per_day=POSTS_PER_DAY,
            min_gap_minutes=int(ACCOUNT_GAP.total_seconds() // 60),
            check=False,
        )
        account_ids[name] = view.id
    for sub in SUBREDDITS:
        await posts.set_subreddit_gap(actor, sub, int(SUBREDDIT_GAP.total_seconds() // 60))
    for name in ACCOUNTS:
        for kind in (BACKFILL_SUBMISSIONS, INBOX):
            await jobs.submit(tenant.id, kind, {"account_id": account_ids[name]}, actor=actor)

    post_ids: list[int] = []
    for n in range(args.posts):
        name = ACCOUNTS[n % 3]
        view = await posts.create_draft(
            actor,
            account_id=account_ids[name],
            subreddit=SUBREDDITS[rng.randrange(10)],
            kind="self",
            title=f"Bench post {n}",
            body=f"Post number {n}.",
        )
        post_ids.append(view.id)

    preflight_started = vt.now()
    preflight_errors = 0

    async def check(post_id: int) -> None:
        nonlocal preflight_errors
        report = await posts.preflight(actor, post_id)
        preflight_errors += len(report.errors)

    async def operator(mine: list[int]) -> None:
        for post_id in mine:
            await check(post_id)

    # four operators, each checking their share of the posts one after another
    await asyncio.gather(*(operator(post_ids[n::4]) for n in range(4)))
    preflight_minutes = (vt.now() - preflight_started).total_seconds() / 60

    moved = 0
    for post_id in post_ids:
        wanted = START + timedelta(minutes=rng.randrange(0, 18 * 60))
        result = await posts.queue(actor, post_id, wanted)
        moved += result.decision.moved

    # -- 00:00: replies to other people's threads, through the same queue ---------------------
    comments = CommentService(uow, vt.clock, clients)
    comment_ids: list[int] = []
    comment_bodies: dict[int, str] = {}
    for n in range(args.comments):
        name = ACCOUNTS[n % 3]
        thread = threads[n]
        link = parse_reply_link(f"https://www.reddit.com{thread.permalink}")
        target = await comments.resolve(actor, account_ids[name], link)  # reads the thread
        body = f"Bench comment {n}: we do it **this** way."
        draft = await comments.draft(actor, account_ids[name], target, body)
        wanted = START + timedelta(minutes=rng.randrange(0, 18 * 60))
        result = await posts.queue(actor, draft.id, wanted)
        moved += result.decision.moved
        comment_ids.append(draft.id)
        comment_bodies[draft.id] = body
    browser = BrowseService(uow, vt.clock, clients)

    # -- what Reddit does during the day -----------------------------------------------------
    timeline = Timeline()
    for hour in (3, 9, 15):
        timeline.add(START + timedelta(hours=hour), "ratelimit")
    timeline.add(START + timedelta(hours=6), "timeout_after_send")
    timeline.add(START + timedelta(hours=12), "removals")
    if args.comments:
        for hour in (4, 10):
            timeline.add(START + timedelta(hours=hour), "comment_ratelimit")
        timeline.add(START + timedelta(hours=7), "comment_timeout_after_send")
    at = START + BROWSE_EVERY
    while at < START + DAY:
        timeline.add(at, "browse")
        at += BROWSE_EVERY
    for hour in range(1, 24):
        timeline.add(START + timedelta(hours=hour), "mail")

    # -- the day ------------------------------------------------------------------------------
    specs = list(REDDIT_PERIODIC)
    next_run: dict[str, datetime] = {spec.name: START for spec in specs}
    horizon = START + timedelta(hours=args.max_hours)
    runs = 0
    browsed = 0
    while True:
        now = vt.now()
        for _, what, _arg in timeline.due(now):
            if what == "browse":
                browsed += await browse_once(browser, actor, rng)
                continue
            await happen(what, fake, rng, vt)
        for spec in specs:
            if now >= next_run[spec.name]:
                await runner.enqueue_periodic(spec, tenant.id)  # what APScheduler would do
                next_run[spec.name] = now + timedelta(seconds=spec.seconds or 60)
        ran = await runner.run_due()
        if ran:
            runs += ran
            continue
        if now >= START + DAY and await unfinished(sessionmaker) == 0:
            break
        if now >= horizon:
            break
        due = await runner.next_wakeup()
        candidates = [t for t in (due, min(next_run.values()), timeline.next_time()) if t]
        target = min(candidates)
        if target > now:
            vt.advance(target - now)

    report = await summarize(
        fake,
        sessionmaker,
        post_ids,
        comment_bodies,
        browsed,
        notifier,
        budgets,
        runs,
        moved,
        preflight_minutes,
        preflight_errors,
        vt,
        wall,
    )
    await clients.aclose()
    await fake.close()
    await uow.dispose()
    await db.dispose()
    print(report["text"])
    return 0 if report["ok"] else 1


async def browse_once(browser: BrowseService, actor: Actor, rng: random.Random) -> int:
    """An operator reads a subreddit's hot page and opens one thread: requests made."""
    page = await browser.listing(actor, SUBREDDITS[rng.randrange(10)], "hot")
    if not page.posts:
        return 1
    await browser.thread(actor, rng.choice(page.posts).post.id)
    return 2


async def happen(what: str, fake: FakeReddit, rng: random.Random, vt: VirtualTime) -> None:
    if what == "comment_ratelimit":
        fake.queue_error(
            "comment", ratelimit="you are doing that too much. try again in 9 minutes."
        )
    elif what == "comment_timeout_after_send":
        fake.queue_error("comment", hang=2, process=True)
    elif what == "ratelimit":
        fake.queue_error("submit", ratelimit="you are doing that too much. try again in 9 minutes.")
    elif what == "timeout_after_send":
        fake.queue_error("submit", hang=2, process=True)
    elif what == "removals":
        ours = [p for p in fake.posts if p.title.startswith("Bench post")]
        for post in rng.sample(ours, min(2, len(ours))):
            fake.set_post_stats(post.fullname, removed_by_category="moderator")
    elif what == "mail":
        for name in ACCOUNTS:
            for _ in range(2):
                fake.add_inbox_message(
                    name, author="someone", body="new today", created_utc=vt.timestamp()
                )


async def unfinished(sessionmaker: Any) -> int:
    async with sessionmaker() as session:
        stmt = select(RedditPost.id).where(
            RedditPost.status.in_(
                [PostStatus.queued, PostStatus.publishing, PostStatus.pending_approval]
            )
        )
        return len((await session.execute(stmt)).all())


def max_in_window(times: list[float], seconds: float) -> int:
    times = sorted(times)
    best = 0
    lo = 0
    for hi, t in enumerate(times):
        while times[lo] <= t - seconds:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


async def summarize(
    fake: FakeReddit,
    sessionmaker: Any,
    post_ids: list[int],
    comment_bodies: dict[int, str],
    browsed: int,
    notifier: RecordingNotifier,
    budgets: RateBudgetRegistry,
    runs: int,
    moved: int,
    preflight_minutes: float,
    preflight_errors: int,
    vt: VirtualTime,
    wall_started: float,
) -> dict[str, Any]:
    problems: list[str] = []
    async with sessionmaker() as session:
        rows = (
            (await session.execute(select(RedditPost).where(RedditPost.id.in_(post_ids))))
            .scalars()
            .all()
        )
        jobs = (await session.execute(select(Job))).scalars().all()
        inbox_rows = (await session.execute(select(RedditInboxMessage))).scalars().all()
        history = (
            (await session.execute(select(RedditPost).where(RedditPost.source == "history")))
            .scalars()
            .all()
        )

    # exactly once
    made = [p for p in fake.posts if p.title.startswith("Bench post")]
    by_title: dict[str, int] = defaultdict(int)
    for post in made:
        by_title[post.title] += 1
    twice = [t for t, n in by_title.items() if n > 1]
    unpublished = [r.id for r in rows if r.status != PostStatus.published]
    fullnames = {p.title: p.fullname for p in made}
    mismatched = [r.id for r in rows if fullnames.get(r.title) != r.fullname]
    if twice:
        problems.append(f"published twice: {twice[:5]}")
    if unpublished or len(made) != len(post_ids):
        problems.append(f"not published: {len(unpublished)} (fake has {len(made)})")
    if mismatched:
        problems.append(f"fullname mismatches: {mismatched[:5]}")

    # comments: exactly once, and the row knows which comment it became
    async with sessionmaker() as session:
        comment_rows = (
            (
                await session.execute(
                    select(RedditPost).where(RedditPost.id.in_(list(comment_bodies)))
                )
            )
            .scalars()
            .all()
        )
    team = {a.lower() for a in ACCOUNTS}
    replies = [c for c in fake.comments if c.author.lower() in team]
    per_body: dict[str, list[str]] = defaultdict(list)
    for comment in replies:
        per_body[comment.body].append(comment.fullname)
    comments_twice = [b for b, names in per_body.items() if len(names) > 1]
    comments_missing = [
        r.id
        for r in comment_rows
        if r.status != PostStatus.published or per_body.get(comment_bodies[r.id]) != [r.fullname]
    ]
    if comments_twice:
        problems.append(f"comments published twice: {comments_twice[:3]}")
    if comments_missing or len(replies) != len(comment_bodies):
        problems.append(
            f"comments not published once: {len(comments_missing)} (fake has {len(replies)})"
        )

    # pacing, from the fake's own creation times
    per_account: dict[str, list[float]] = defaultdict(list)
    per_sub: dict[str, list[float]] = defaultdict(list)
    for post in made:
        per_account[post.author].append(post.created_utc)
        per_sub[post.subreddit.lower()].append(post.created_utc)
    for comment in replies:  # comments keep the same pacing as posts
        per_account[comment.author].append(comment.created_utc)
        per_sub[comment.subreddit.lower()].append(comment.created_utc)
    min_account_gap = min(
        (
            b - a
            for ts in per_account.values()
            for a, b in zip(sorted(ts), sorted(ts)[1:], strict=False)
        ),
        default=float("inf"),
    )
    min_sub_gap = min(
        (
            b - a
            for ts in per_sub.values()
            for a, b in zip(sorted(ts), sorted(ts)[1:], strict=False)
        ),
        default=float("inf"),
    )
    max_day = max(
        (max_in_window(ts, DAY.total_seconds()) for ts in per_account.values()), default=0
    )
    if min_account_gap < ACCOUNT_GAP.total_seconds():
        problems.append(f"account gap broken: {min_account_gap:.0f}s")
    if min_sub_gap < SUBREDDIT_GAP.total_seconds():
        problems.append(f"subreddit gap broken: {min_sub_gap:.0f}s")
    if max_day > POSTS_PER_DAY:
        problems.append(f"daily limit broken: {max_day}")
    last_item = max(
        [p.created_utc for p in made] + [c.created_utc for c in replies],
        default=START.timestamp(),
    )

    # rate limit
    api = [r for r in fake.requests if r.host == "oauth"]
    per_minute = max_in_window([r.at for r in api], 60)
    if fake.throttled:
        problems.append(f"{fake.throttled} answers were 429")
    if per_minute > LIMIT_PER_MINUTE:
        problems.append(f"{per_minute} requests in one minute")

    last = max((p.created_utc for p in made), default=START.timestamp())
    delays = sorted(
        (r.published_at - r.requested_for).total_seconds() / 60
        for r in rows
        if r.published_at and r.requested_for
    )
    kinds = defaultdict(int)
    for job in jobs:
        kinds[(job.kind, job.status)] += 1
    ratelimited = sum(1 for r in fake.requests_to("submit") if r.status == 200) - len(made)
    texts = [t for k, _, t in notifier.events if k == "text"]
    budget = budgets.get(APP)
    lines = [
        f"posts queued: {len(post_ids)} on {len(ACCOUNTS)} accounts (one client id), "
        f"{len(SUBREDDITS)} subreddits",
        f"pre-flight: {len(post_ids) * 3} requests in {preflight_minutes:.1f} virtual minutes, "
        f"{preflight_errors} errors",
        f"moved by pacing when queued: {moved}",
        f"published: {len(made)} (exactly once: {not twice}); last at "
        f"{datetime.fromtimestamp(last, UTC):%H:%M} virtual",
        f"delay after requested time (min): median {statistics.median(delays):.0f}, "
        f"max {max(delays):.0f}"
        if delays
        else "delay: -",
        f"comments queued: {len(comment_bodies)}; published: {len(replies)} (exactly once: "
        f"{not comments_twice and not comments_missing}); /api/comment sent: "
        f"{len(fake.requests_to('comment'))} (RATELIMIT answers: "
        f"{sum(1 for r in fake.requests_to('comment') if r.status == 200) - len(replies)})",
        f"browsing: {browsed} reads (listing + thread every 20 min); last post or comment at "
        f"{datetime.fromtimestamp(last_item, UTC):%d %H:%M} virtual",
        f"submits sent: {len(fake.requests_to('submit'))} "
        f"(RATELIMIT answers: {ratelimited}; unknown outcomes found: "
        f"{sum('not sent twice' in t for t in texts)})",
        f"pacing: min gap per account {min_account_gap / 60:.1f} min (rule 15), per subreddit "
        f"{min_sub_gap / 60:.1f} min (rule 30), max posts and comments in 24 h per account "
        f"{max_day} (rule {POSTS_PER_DAY})",
        f"API requests: {len(api)}; max in any 60 s: {per_minute} (limit {LIMIT_PER_MINUTE}); "
        f"429s: {fake.throttled}; token grants: {len(fake.grants)}",
        f"client-side waiting for the budget: {budget.total_wait_seconds / 60:.1f} virtual min",
        f"history imported: {len(history)}; inbox stored: {len(inbox_rows)} "
        f"(announced {sum(1 for m in inbox_rows if m.notified)})",
        f"removal alerts: {sum('removed on Reddit' in t for t in texts)}",
        f"jobs run: {runs}; by kind/status: "
        + ", ".join(f"{k}={n}" for (k, s), n in sorted(kinds.items()) if s == JobStatus.succeeded),
        f"virtual time: {(vt.now() - START).total_seconds() / 3600:.1f} h; wall time: "
        f"{time.perf_counter() - wall_started:.1f} s",
        "RESULT: " + ("ok" if not problems else "FAILED: " + "; ".join(problems)),
    ]
    return {"ok": not problems, "text": "\n".join(lines)}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=200)
    parser.add_argument("--comments", type=int, default=30)
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--max-hours", type=float, default=48.0)
    parser.add_argument("--concurrency", type=int, default=8)
    return parser.parse_args()


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(parse_args())))
