"""The one factory: settings → database → services → Bot → Dispatcher → web app → job engine.

Nothing is created at import time. `Opsdeck.start()` brings the process up; `stop()` stops
taking updates, finishes what is in flight and releases job leases.
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Sequence
from urllib.parse import urlparse

from aiogram import BaseMiddleware, Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.fsm.storage.base import BaseStorage
from aiohttp import web

from bot import aiogram_models, commands
from bot.api import routes as api_routes
from bot.api.idempotency import IdempotencyKeys
from bot.api.server import PREFIX as API_PREFIX
from bot.api.server import ApiDeps, build_api_app
from bot.db_retry import ConnectionLossRetry, SentTracker
from bot.fsm_storage import DatabaseStorage
from bot.handlers import (
    audit,
    charts,
    common,
    errors,
    fallback,
    jobs,
    me,
    operators,
    queue,
    reddit_accounts,
    reddit_browse,
    reddit_comments,
    reddit_compose,
    reddit_posts,
    vault,
)
from bot.handlers import backup as backup_handlers
from bot.handlers import settings as settings_handlers
from bot.handlers import status as status_handlers
from bot.handlers import tokens as tokens_handlers
from bot.inbox import HandledWithUpdate, Inbox, Poller
from bot.logs import REDACTOR
from bot.metrics import Metrics, bind_job_context
from bot.middlewares.context import ContextMiddleware
from bot.notifier import TelegramNotifier
from bot.outbox import Outbox, Sender
from bot.peer_guard import TransactionGuard
from bot.progress import ChatProgress
from bot.startup import TelegramLink
from bot.telegram_retry import RetryMiddleware
from bot.vault_delivery import (
    DELIVERED_HOOK,
    VAULT_SOURCE,
    VaultUploadSource,
    delivered_hook,
    delivery_failed_hook,
    register_delivery_jobs,
)
from bot.web import bearer_only, build_metrics_app, build_web_app
from bot.web_claims import ClaimRoutesConfig, add_claim_routes
from bot.web_reddit import add_reddit_routes
from core.backup import BackupConfig, BackupService, backup_periodic_specs, register_backup_jobs
from core.charts.series import ChartData
from core.clock import Clock, SystemClock
from core.crypto import SecretBox
from core.jobs.engine import JobEngine
from core.jobs.kinds import Registrar, build_registry, periodic_specs
from core.ratelimit import Limit, SharedLimiter
from core.reddit import RateBudgetRegistry
from core.reddit_ops import (
    DEP_CLIENTS,
    DEP_PROGRESS,
    DEP_UOW,
    REDDIT_PERIODIC,
    AccountService,
    PostService,
    RedditClients,
    config_from_settings,
    register_reddit_jobs,
)
from core.reddit_ops.browse import BrowseService
from core.reddit_ops.budget import database_budgets
from core.reddit_ops.clients import configured_user_agent
from core.reddit_ops.comments import CommentService
from core.reddit_ops.listing import RedditListing
from core.reddit_ops.oauth import ConnectService, WebApp
from core.services.api_tokens import ApiTokenService
from core.services.audit import AuditService
from core.services.container import Services
from core.services.jobs import JobService
from core.services.operators import OperatorService, bootstrap_owners
from core.settings import Settings
from core.status import StatusService, database_kind
from core.vault import (
    VaultConfig,
    VaultGateway,
    VaultService,
    register_vault_jobs,
    vault_periodic_specs,
)
from storage import migrate
from storage.blobs import blob_store_from_url
from storage.db import (
    create_engine,
    create_sessionmaker,
    hold_startup_lock,
)
from storage.identity import IdentityReader
from storage.repositories import operators as op_repo
from storage.uow import UnitOfWork

log = logging.getLogger(__name__)

try:
    VERSION = importlib.metadata.version("opsdeck")
except importlib.metadata.PackageNotFoundError:  # running from a checkout without install
    VERSION = "dev"


def build_dispatcher(
    middleware: ContextMiddleware, storage: BaseStorage, observer: BaseMiddleware | None = None
) -> Dispatcher:
    # aiogram registers its FSM middleware (which reads the update's state) before any of
    # ours; it goes after ContextMiddleware instead, which has read the state together with
    # the operator in one query and refused strangers without reading it at all.
    dp = Dispatcher(storage=storage, disable_fsm=True)
    if observer is not None:  # first: measures and tags every update, refused ones included
        dp.update.outer_middleware(observer)
    # outside the unit of work: a try whose DB connection died gets a fresh session
    dp.update.outer_middleware(ConnectionLossRetry())
    dp.update.outer_middleware(middleware)
    dp.update.outer_middleware(HandledWithUpdate())  # inside it: commits with the update
    middleware.fsm = dp.fsm
    dp.update.outer_middleware(dp.fsm)
    # vault before common: `/start <code>` deep links are claims; bare /start stays common's
    for module in (errors, vault, common, charts, jobs, queue, operators, me, audit):
        dp.include_router(module.build_router())  # charts before jobs: it takes /jobs chart
    dp.include_router(reddit_accounts.build_router())
    dp.include_router(reddit_compose.build_router())  # before reddit_posts: it takes Edit
    dp.include_router(reddit_posts.build_router())
    dp.include_router(reddit_browse.build_router())
    dp.include_router(reddit_comments.build_router())
    dp.include_router(status_handlers.build_router())
    dp.include_router(settings_handlers.build_router())
    dp.include_router(backup_handlers.build_router())
    dp.include_router(tokens_handlers.build_router())
    dp.include_router(fallback.build_router())  # last: answers whatever nothing else took
    return dp


class Opsdeck:
    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        worker_id: str | None = None,
        registrars: Sequence[Registrar] = (),
    ) -> None:
        self.settings = settings
        self.registrars = list(registrars)
        self.clock = clock or SystemClock()
        self.worker_id = worker_id
        self.started = False
        self._opened = False
        self.api_deps: ApiDeps | None = None
        self.telegram = TelegramLink(settings.telegram.api_url)
        self._polling: Poller | None = None
        self._runner: web.AppRunner | None = None
        self._metrics_runner: web.AppRunner | None = None
        self.metrics_port: int | None = None  # the metrics listener's port, once bound

    async def start(self) -> None:
        s = self.settings
        s.require_runtime()
        token = s.telegram.bot_token.get_secret_value()  # type: ignore[union-attr]
        REDACTOR.add(token)
        REDACTOR.add(s.webhook_secret())

        # storage
        self.db = create_engine(s.database_url, echo=s.database.echo)
        await migrate.upgrade(self.db)
        self.sessionmaker = create_sessionmaker(self.db)
        self.uow = UnitOfWork(self.db)  # it owns the lock-free read side (storage/uow.py)
        self.identities = IdentityReader(self.uow)
        async with self.sessionmaker() as session:
            await hold_startup_lock(session)  # processes starting together take turns
            await bootstrap_owners(session, self.clock, s.opsdeck.owner_ids)
            await session.commit()

        # Telegram client
        aiogram_models.warm_up()
        api = TelegramAPIServer.from_base(s.telegram.api_url, is_local=s.telegram.api_is_local)
        self.bot = Bot(
            token,
            session=AiohttpSession(api=api),
            default=DefaultBotProperties(parse_mode=ParseMode.HTML),
        )
        self.retry = RetryMiddleware()
        self.bot.session.middleware(TransactionGuard())  # DESIGN §9, storage/txguard.py
        self.bot.session.middleware(self.retry)
        self.bot.session.middleware(SentTracker())  # see bot/db_retry.py
        # The outbox sender paces and retries its own sends (429, 5xx), so it gets a Bot
        # without the sleeping RetryMiddleware.
        self.sender_bot = Bot(
            token,
            session=AiohttpSession(api=api),
            default=DefaultBotProperties(parse_mode=ParseMode.HTML),
        )
        self.sender_bot.session.middleware(TransactionGuard())
        self.outbox = Outbox(self.uow, self.clock)
        self.sender = Sender(
            self.sender_bot,
            self.uow,
            clock=self.clock,
            settings=s.outbox,
            outbox=self.outbox,
            owner=self.worker_id,
        )

        # core
        self.notifier = TelegramNotifier(self.bot, self.uow, self.clock, self.outbox)
        # vault
        self.vault_config = VaultConfig.from_settings(s.vault)
        self.blobs = blob_store_from_url(
            s.vault_storage_url,
            endpoint_url=s.vault.s3_endpoint_url,
            access_key=s.vault.s3_access_key_id,
            secret_key=s.vault.s3_secret_access_key,
            region=s.vault.s3_region,
        )

        # reddit: one client per account; accounts on one app id share a rate budget, and
        # every process on this database shares it too
        self.reddit_clients = RedditClients(
            config_from_settings(s.reddit),
            RateBudgetRegistry(clock=self.clock, shared=database_budgets(self.uow)),
            SecretBox(s.secret_key()),
            clock=self.clock,
            user_agent=configured_user_agent(s.reddit),
        )

        self.backup_config = BackupConfig.from_settings(s)
        self.registry = build_registry(
            register_backup_jobs(self.backup_config),
            register_vault_jobs,
            register_delivery_jobs,
            register_reddit_jobs,
            *self.registrars,
        )
        bind_job_context(self.registry)  # job logs carry job_id and job_kind
        self.engine = JobEngine(
            sessionmaker=self.sessionmaker,
            registry=self.registry,
            settings=s.jobs,
            clock=self.clock,
            notifier=self.notifier,
            worker_id=self.worker_id,
            uow=self.uow,
            deps={
                "bot": self.bot,
                "blobs": self.blobs,
                DEP_CLIENTS: self.reddit_clients,
                DEP_UOW: self.uow,
                # backfills started from chat edit one message with their progress
                DEP_PROGRESS: ChatProgress(self.bot, self.uow),
            },
        )
        self.metrics = Metrics(
            self.uow,
            version=VERSION,
            retry_after_sources=[self.retry, getattr(self, "sender", None)],
            budgets=self.reddit_clients.budgets,
        )
        self.engine.listeners.append(self.metrics.observe_job)
        for spec in [
            *periodic_specs(s),
            *backup_periodic_specs(self.backup_config),
            *vault_periodic_specs(self.vault_config),
            *REDDIT_PERIODIC,
        ]:
            self.engine.add_periodic(spec)
        self.reddit_connect = ConnectService(
            self.uow,
            self.clock,
            SecretBox(s.secret_key()),
            WebApp.from_settings(s),
            self.reddit_clients.config,
            self.reddit_clients.budgets,
            public_base_url=s.public_base_url,
            wake=self.engine.wake_at,
        )
        self.services = self._services()

        # Telegram side
        self.dispatcher = build_dispatcher(
            ContextMiddleware(self.services, self.identities),
            DatabaseStorage(self.uow, self.clock),
            self.metrics.middleware(),
        )
        self.dispatcher["settings"] = s
        self.dispatcher["api_tokens"] = self.api_tokens = ApiTokenService(self.uow, self.clock)
        self.dispatcher["runtime"] = status_handlers.Runtime(
            version=VERSION,
            started_at=self.clock.now(),
            scheduler_running=lambda: self.engine.running,
            database=database_kind(s.database_url),
            reddit_clients=self.reddit_clients,
        )
        # vault claims queue their answers and files in the outbox; once a queued file is
        # sent, its hook schedules the link's auto-delete (if it fails, the person is told);
        # a file Telegram does not hold yet is uploaded by the sender from the blob store
        self.dispatcher["outbox"] = self.outbox
        self.sender.add_hook(
            DELIVERED_HOOK,
            delivered_hook(self.services.jobs),
            on_failed=delivery_failed_hook(self.outbox, self.uow, self.clock, self.notifier),
        )
        self.sender.add_source(VAULT_SOURCE, VaultUploadSource(self.uow, self.blobs, self.clock))
        webhook_url = s.telegram.webhook_url
        webhook_path = (
            urlparse(webhook_url).path if webhook_url else ""
        ) or s.telegram.webhook_path
        # every update, webhook or polled, is stored before it is acknowledged (bot/inbox.py)
        self.inbox = Inbox(
            self.uow,
            self.bot,
            self.dispatcher,
            s.inbox,
            self.clock,
            self.worker_id or "",
            box=SecretBox(s.secret_key()),
        )
        self.feeder = self.inbox  # what tests and benches drain
        self.metrics.registry.register(self.inbox)  # inbox depth and oldest age
        app = build_web_app(
            db=self.db,
            scheduler_running=lambda: self.engine.running,
            extra_checks={"telegram": self.telegram.check},
            inbox=self.inbox if webhook_url else None,
            webhook_path=webhook_path,
            webhook_secret=s.webhook_secret(),
        )
        add_claim_routes(
            app,
            VaultGateway(
                uow=self.uow,
                clock=self.clock,
                blobs=self.blobs,
                secret_key=s.secret_key(),
                config=self.vault_config,
            ),
            ClaimRoutesConfig(
                claim_limit=s.vault.http_claim_limit,
                claim_window_seconds=s.vault.http_claim_window_seconds,
                download_limit=s.vault.http_download_limit,
                download_window_seconds=s.vault.http_download_window_seconds,
                public_base_url=s.public_base_url,
                trusted_proxy_hops=s.http.trusted_proxy_hops,
            ),
            secret_key=s.secret_key(),
        )
        add_reddit_routes(
            app,
            self.reddit_connect,
            self.outbox,
            self.dispatcher.fsm.storage,
            self.bot.id,
            s.public_base_url,
            s.http.trusted_proxy_hops,
        )
        metrics_token = s.metrics.token.get_secret_value() if s.metrics.token else None
        if s.metrics.on_http_port:  # one port must do: only with the bearer token
            app.router.add_get("/metrics", bearer_only(self.metrics.handle, metrics_token))
        if s.api.enabled:
            self.api_deps = self._api_deps()
            app.add_subapp(API_PREFIX, build_api_app(api_routes.registry(), self.api_deps))
        self.web_app = app
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await self.inbox.start()  # before the first webhook POST can arrive
        await web.TCPSite(self._runner, s.http.host, s.http.port).start()
        if not s.metrics.on_http_port:
            # off the public door: a listener of its own, loopback unless configured
            metrics_app = build_metrics_app(self.metrics.handle, metrics_token)
            self._metrics_runner = web.AppRunner(metrics_app, access_log=None)
            await self._metrics_runner.setup()
            await web.TCPSite(self._metrics_runner, s.metrics.host, s.metrics.port).start()
            self.metrics_port = self._metrics_runner.addresses[0][1]
            log.info("metrics on http://%s:%s/metrics", s.metrics.host, self.metrics_port)

        self._opened = True  # from here on, stop() closes what start() made

        # Telegram last: health and claims answer while it is out of reach
        self.me = await self.telegram.connect(self.bot)
        self.dispatcher["bot_username"] = self.me.username
        if self.api_deps is not None:
            self.api_deps.bot_username = self.me.username or ""
        await self._publish_commands()
        await self.sender.start()
        await self.engine.start()
        allowed = self.dispatcher.resolve_used_update_types()
        if webhook_url:
            await self.bot.set_webhook(
                webhook_url,
                secret_token=s.webhook_secret(),
                allowed_updates=allowed,
                drop_pending_updates=False,
            )
            log.info("receiving updates by webhook at %s", webhook_url)
        else:
            await self.bot.delete_webhook(drop_pending_updates=False)
            # the offset moves only past stored updates; handling runs from the inbox
            self._polling = Poller(self.bot, self.inbox, allowed)
            self._polling.start()
            log.info("receiving updates by long polling")
        self.started = True
        log.info("Opsdeck is up as @%s on http://%s:%s", self.me.username, s.http.host, s.http.port)

    def _api_deps(self) -> ApiDeps:
        s = self.settings
        return ApiDeps(
            services=self.services,
            status=StatusService(self.uow, self.clock, s.opsdeck.owner_ids),
            process=self.dispatcher["runtime"].process,
            tokens=self.api_tokens,
            keys=IdempotencyKeys(self.uow, self.clock),
            limiter=SharedLimiter(
                "api", Limit(s.api.requests_per_minute, 60), self.clock, self.sessionmaker
            ),
            deployment_owner_ids=frozenset(s.opsdeck.owner_ids),
            version=VERSION,
            public_base_url=s.public_base_url,
            bot_username="",  # known once Telegram answers (start() fills it in)
        )

    def _services(self) -> Services:
        """Every service, once: each call goes through the unit of work (DESIGN §9)."""
        uow, clock = self.uow, self.clock
        jobs = JobService(uow, clock, self.notifier, self.engine)
        posts = PostService(uow, clock, jobs, clients=self.reddit_clients)
        return Services(
            uow=uow,
            clock=clock,
            operators=OperatorService(uow, clock, self.settings.opsdeck.owner_ids),
            jobs=jobs,
            audit=AuditService(uow),
            backup=BackupService(uow, self.backup_config, jobs, self.settings.opsdeck.owner_ids),
            vault=VaultService(uow, clock, self.blobs, self.vault_config),
            reddit_accounts=AccountService(
                uow,
                clock,
                SecretBox(self.settings.secret_key()),
                jobs=jobs,
                clients=self.reddit_clients,
            ),
            reddit_posts=posts,
            reddit_connect=self.reddit_connect,
            reddit_browse=BrowseService(uow, clock, self.reddit_clients),
            reddit_comments=CommentService(uow, clock, self.reddit_clients),
            reddit_listing=RedditListing({"posts": posts.listed}),
            charts=ChartData(uow, clock),
        )

    async def _publish_commands(self) -> None:
        await commands.publish_default(self.bot)
        from storage.repositories import tenants as tenant_repo

        async with self.uow.read() as session:
            operators = [
                (op.telegram_user_id, op.role)
                for tenant in await tenant_repo.list_all(session)
                for op in await op_repo.in_tenant(session, tenant.id)
            ]
        for user_id, role in operators:
            await commands.publish_for(self.bot, user_id, role)

    async def stop(self) -> None:
        """Stop taking updates, finish what is in flight, release job leases, close everything."""
        if not self._opened:
            return
        self.started = self._opened = False
        grace = self.settings.jobs.shutdown_timeout_seconds
        if self._polling is not None:
            await self._polling.stop()
        # updates in handling finish before their database and Bot session close under them;
        # the rest stay in the inbox for the next process
        await self.inbox.stop(grace)
        await self.engine.stop()
        await self.sender.stop()  # after the engine: its last notifications go out
        if self._runner is not None:
            await self._runner.cleanup()
        if self._metrics_runner is not None:
            await self._metrics_runner.cleanup()
        await self.bot.session.close()
        await self.sender_bot.session.close()
        await self.blobs.aclose()
        await self.reddit_clients.aclose()
        await self.uow.dispose()  # its read engine and fast read connection
        await self.db.dispose()
        log.info("Opsdeck stopped")
