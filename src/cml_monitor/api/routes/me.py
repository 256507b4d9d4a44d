"""`/api/me`: who the caller is, so the dashboard shows admins the buttons that act."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel

router = APIRouter(prefix="/api", tags=["auth"])


class Me(BaseModel):
    role: str
    subject: str | None


@router.get("/me", response_model=Me)
async def me(request: Request) -> Me:
    """The caller's role; without authentication configured everyone is `admin`."""
    principal = getattr(request.state, "principal", None)
    if principal is None:
        return Me(role="admin", subject=None)
    return Me(role=principal.role, subject=principal.subject)
