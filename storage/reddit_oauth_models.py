"""Pending "Connect with Reddit" requests: the OAuth `state` an operator's authorise link
carries, stored hashed (like claim codes), bound to the operator and workspace, single-use."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base, BigId
from storage.types import UTCDateTime


class RedditOAuthState(Base):
    __tablename__ = "reddit_oauth_states"
    __table_args__ = (Index("ix_reddit_oauth_states_expires_at", "expires_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # sha256 hex of the state: a leaked database row cannot finish someone's connect
    state_hash: Mapped[str] = mapped_column(String(64), unique=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    operator_user_id: Mapped[int] = mapped_column(BigInteger)  # Telegram user id
    chat_id: Mapped[int] = mapped_column(BigInteger)  # where the operator asked; told there
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
