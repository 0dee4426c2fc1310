"""Who is acting, and what their role lets them do. Checked in core on every mutation."""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import Forbidden
from storage.models import Role

RANK = {Role.viewer: 0, Role.operator: 1, Role.owner: 2}


@dataclass(frozen=True, slots=True)
class Actor:
    operator_id: int
    user_id: int  # Telegram user id
    tenant_id: int
    role: Role
    timezone: str = "UTC"
    display_name: str | None = None
    notify: bool = True

    def at_least(self, role: Role) -> bool:
        return RANK[self.role] >= RANK[role]

    def require(self, role: Role, what: str = "do that") -> None:
        if not self.at_least(role):
            raise Forbidden(f"Your role ({self.role}) cannot {what}; ask an owner.")

    @property
    def label(self) -> str:
        return self.display_name or f"user {self.user_id}"
