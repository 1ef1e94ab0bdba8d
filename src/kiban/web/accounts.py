"""Who may use the web console: local users (argon2-hashed passwords), browser sessions, API tokens,
sign-in throttling and the audit log — all kept in the state store.

Secrets never rest in clear: a session cookie and an API token are random strings of which the store keeps
only the SHA-256, and a password only its argon2 hash. Nothing here ever returns a hash to a caller outside.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from kiban.errors import UsageError, did_you_mean
from kiban.store import Store, utcnow
from kiban.store.schema import api_tokens, audit_log, login_failures, sessions, users

ROLES = ("viewer", "analyst", "operator", "admin")  # each role may do everything the ones before it may
SESSION_HOURS = 12
FREE_FAILURES = 3  # wrong passwords allowed before the backoff starts
MAX_BACKOFF = timedelta(minutes=15)
TOKEN_USE_GRAIN = timedelta(minutes=1)  # how exactly a token's last use is kept
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,100}$")


@dataclass(frozen=True)
class User:
    name: str
    role: str
    created_at: datetime

    def can(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    actor: str | None
    action: str
    target: str | None
    ip: str | None
    outcome: str
    detail: str | None


@dataclass(frozen=True)
class TokenInfo:
    """An API token as the admin sees it: whose, its label, when made and last used — never the token."""

    id: int
    user: str
    label: str | None
    created_at: datetime
    last_used_at: datetime | None


class ThrottledError(Exception):
    """Too many wrong passwords for this user from this address: wait ``retry_after`` seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"too many failed sign-ins; try again in {int(retry_after) + 1} s")
        self.retry_after = retry_after


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _hasher() -> Any:
    from argon2 import PasswordHasher

    return PasswordHasher()


def check_role(role: str) -> str:
    if role not in ROLES:
        raise UsageError(f"unknown role '{role}'", did_you_mean(role, ROLES) or f"use one of: {', '.join(ROLES)}")
    return role


class Accounts:
    """Users, sessions, tokens, throttling and audit over one state store."""

    def __init__(self, store: Store, reader: Store | None = None) -> None:
        self.store = store
        self.reader = reader or store  # lookups on every request read through it (see kiban.web.views.read_only)
        self._dummy: str | None = None

    # -- users ------------------------------------------------------------------------------
    def add_user(self, name: str, password: str, role: str) -> User:
        if not _NAME.match(name):
            raise UsageError(f"'{name}' is not a valid user name", "use letters, digits and _ . @ - (up to 100)")
        check_role(role)
        _check_password(password)
        if self.user(name) is not None:
            raise UsageError(f"user '{name}' already exists", f"change the password with `kiban users passwd {name}`")
        now = utcnow()
        with self.store.engine.begin() as conn:
            conn.execute(users.insert().values(name=name, password_hash=_hasher().hash(password), role=role,
                                               created_at=now, updated_at=now))
        return User(name, role, now)

    def remove_user(self, name: str) -> None:
        self.require(name)
        with self.store.engine.begin() as conn:
            conn.execute(users.delete().where(users.c.name == name))
            conn.execute(sessions.delete().where(sessions.c.user_name == name))
            conn.execute(api_tokens.delete().where(api_tokens.c.user_name == name))

    def set_password(self, name: str, password: str) -> None:
        self.require(name)
        _check_password(password)
        with self.store.engine.begin() as conn:
            conn.execute(users.update().where(users.c.name == name).values(
                password_hash=_hasher().hash(password), updated_at=utcnow()))
            conn.execute(sessions.delete().where(sessions.c.user_name == name))  # sign out everywhere
            conn.execute(api_tokens.delete().where(api_tokens.c.user_name == name))  # tokens made with the old one

    def set_role(self, name: str, role: str) -> None:
        self.require(name)
        check_role(role)
        with self.store.engine.begin() as conn:
            conn.execute(users.update().where(users.c.name == name).values(role=role, updated_at=utcnow()))

    def user(self, name: str) -> User | None:
        with self.reader.engine.connect() as conn:
            row = conn.execute(sa.select(users.c.name, users.c.role, users.c.created_at)
                               .where(users.c.name == name)).first()
        return User(row.name, row.role, row.created_at) if row else None

    def require(self, name: str) -> User:
        found = self.user(name)
        if found is None:
            raise UsageError(f"no user named '{name}'",
                             did_you_mean(name, [u.name for u in self.list_users()]) or "list them: kiban users list")
        return found

    def list_users(self) -> list[User]:
        with self.reader.engine.connect() as conn:
            rows = conn.execute(sa.select(users.c.name, users.c.role, users.c.created_at)
                                .order_by(users.c.name)).all()
        return [User(r.name, r.role, r.created_at) for r in rows]

    def count_users(self) -> int:
        with self.reader.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(users)).scalar() or 0)

    # -- signing in ---------------------------------------------------------------------------
    def authenticate(self, name: str, password: str, ip: str, now: datetime | None = None) -> User | None:
        """The user if the password is right. Raises ThrottledError while this user+address is backing off.

        The attempt is counted *before* the (slow) password check, in one write transaction: parallel
        attempts are serialised there, so no more than ``FREE_FAILURES`` wrong passwords are ever evaluated
        before the backoff starts, however many arrive at once. A right password clears the count."""
        now = now or utcnow()
        key = name[:100]
        self._reserve(key, ip, now)
        with self.reader.engine.connect() as conn:
            row = conn.execute(sa.select(users.c.name, users.c.role, users.c.created_at, users.c.password_hash)
                               .where(users.c.name == name)).first()
        ok = self._verify(row.password_hash if row else None, password)
        if ok and row is not None:
            with self.store._tx() as conn:
                conn.execute(login_failures.delete().where(login_failures.c.user_name == key,
                                                           login_failures.c.ip == ip))
            return User(row.name, row.role, row.created_at)
        return None

    def _verify(self, stored: str | None, password: str) -> bool:
        from argon2.exceptions import InvalidHashError, VerificationError

        hasher = _hasher()
        if stored is None:  # spend the same time as for a real user, so names cannot be probed by timing
            self._dummy = self._dummy or hasher.hash("not a password")
            stored, password = self._dummy, password + "\0"
        try:
            return bool(hasher.verify(stored, password))
        except (VerificationError, InvalidHashError):
            return False

    def _reserve(self, name: str, ip: str, now: datetime) -> None:
        """Count one attempt of ``name`` from ``ip`` unless it is backing off (then ThrottledError)."""
        with self.store._tx() as conn:
            row = conn.execute(sa.select(login_failures.c.failures, login_failures.c.blocked_until).where(
                login_failures.c.user_name == name, login_failures.c.ip == ip).with_for_update()).first()
            if row is not None and row.blocked_until > now:
                raise ThrottledError((row.blocked_until - now).total_seconds())
            failures = (row.failures if row is not None else 0) + 1
            over = failures - FREE_FAILURES + 1  # the attempt that uses the last free one starts the backoff
            wait = min(timedelta(seconds=2 ** (over - 1)), MAX_BACKOFF) if over > 0 else timedelta(0)
            values = {"failures": failures, "last_failed_at": now, "blocked_until": now + wait}
            if row is None:
                conn.execute(login_failures.insert().values(user_name=name, ip=ip, **values))
            else:
                conn.execute(login_failures.update().where(login_failures.c.user_name == name,
                                                           login_failures.c.ip == ip).values(**values))

    # -- sessions -----------------------------------------------------------------------------
    def start_session(self, user: User, ip: str) -> tuple[str, str]:
        """A new session: (cookie value, CSRF token)."""
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        now = utcnow()
        with self.store.engine.begin() as conn:
            conn.execute(sessions.delete().where(sessions.c.expires_at < now))
            conn.execute(sessions.insert().values(token_hash=digest(token), user_name=user.name, csrf=csrf,
                                                  created_at=now, expires_at=now + timedelta(hours=SESSION_HOURS),
                                                  ip=ip))
        return token, csrf

    def session(self, token: str) -> tuple[User, str] | None:
        """(user, CSRF token) of a live session."""
        query = (sa.select(users.c.name, users.c.role, users.c.created_at, sessions.c.csrf)
                 .select_from(sessions.join(users, users.c.name == sessions.c.user_name))
                 .where(sessions.c.token_hash == digest(token), sessions.c.expires_at > utcnow()))
        with self.reader.engine.connect() as conn:
            row = conn.execute(query).first()
        return (User(row.name, row.role, row.created_at), row.csrf) if row else None

    def end_session(self, token: str) -> None:
        with self.store.engine.begin() as conn:
            conn.execute(sessions.delete().where(sessions.c.token_hash == digest(token)))

    # -- API tokens ---------------------------------------------------------------------------
    def create_token(self, name: str, label: str | None = None) -> str:
        """A new Bearer token for ``name``; shown once, only its SHA-256 is kept."""
        self.require(name)
        token = "kbn_" + secrets.token_urlsafe(32)
        with self.store.engine.begin() as conn:
            conn.execute(api_tokens.insert().values(user_name=name, token_hash=digest(token), label=label,
                                                    created_at=utcnow()))
        return token

    def token_user(self, token: str) -> User | None:
        query = (sa.select(users.c.name, users.c.role, users.c.created_at, api_tokens.c.id, api_tokens.c.last_used_at)
                 .select_from(api_tokens.join(users, users.c.name == api_tokens.c.user_name))
                 .where(api_tokens.c.token_hash == digest(token)))
        with self.reader.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        now = utcnow()
        if row.last_used_at is None or now - row.last_used_at > TOKEN_USE_GRAIN:  # not a write per request
            with self.store.engine.begin() as conn:
                conn.execute(api_tokens.update().where(api_tokens.c.id == row.id).values(last_used_at=now))
        return User(row.name, row.role, row.created_at)

    def tokens(self) -> list[TokenInfo]:
        """Every API token (newest first), without its hash."""
        query = (sa.select(api_tokens.c.id, api_tokens.c.user_name, api_tokens.c.label, api_tokens.c.created_at,
                           api_tokens.c.last_used_at).order_by(api_tokens.c.id.desc()))
        with self.reader.engine.connect() as conn:
            return [TokenInfo(r.id, r.user_name, r.label, r.created_at, r.last_used_at)
                    for r in conn.execute(query).all()]

    def revoke_tokens(self, name: str) -> int:
        with self.store.engine.begin() as conn:
            return int(conn.execute(api_tokens.delete().where(api_tokens.c.user_name == name)).rowcount or 0)

    # -- audit --------------------------------------------------------------------------------
    def audit(self, actor: str | None, action: str, target: str | None = None, ip: str | None = None,
              outcome: str = "ok", detail: str | None = None) -> None:
        with self.store.engine.begin() as conn:
            conn.execute(audit_log.insert().values(at=utcnow(), actor=actor, action=action, target=target, ip=ip,
                                                   outcome=outcome, detail=(detail or None) and detail[:2000]))

    def audit_entries(self, limit: int = 200) -> list[AuditEntry]:
        with self.reader.engine.connect() as conn:
            rows = conn.execute(audit_log.select().order_by(audit_log.c.id.desc()).limit(limit)).all()
        return [AuditEntry(r.at, r.actor, r.action, r.target, r.ip, r.outcome, r.detail) for r in rows]


def _check_password(password: str) -> None:
    if len(password) < 8:
        raise UsageError("the password is too short", "use at least 8 characters")
