"""Every service of one process, built once at start-up (DESIGN §9).

Each call reads or writes through the unit of work (`storage.uow`), so no service holds a
session and the one `Services` object serves every update, HTTP request and job alike.
Handlers and routes get it by name (`services.vault`, `services.reddit_posts`, …).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.backup import BackupService
    from core.charts.series import ChartData
    from core.clock import Clock
    from core.reddit_ops.accounts import AccountService
    from core.reddit_ops.browse import BrowseService
    from core.reddit_ops.comments import CommentService
    from core.reddit_ops.listing import RedditListing
    from core.reddit_ops.oauth import ConnectService
    from core.reddit_ops.posts import PostService
    from core.services.audit import AuditService
    from core.services.jobs import JobService
    from core.services.operators import OperatorService
    from core.vault.service import VaultService
    from storage.uow import UnitOfWork


@dataclass(slots=True)
class Services:
    uow: UnitOfWork
    clock: Clock
    operators: OperatorService
    jobs: JobService
    audit: AuditService
    backup: BackupService
    vault: VaultService
    reddit_accounts: AccountService
    reddit_posts: PostService
    reddit_connect: ConnectService
    reddit_browse: BrowseService
    reddit_comments: CommentService
    reddit_listing: RedditListing
    charts: ChartData
