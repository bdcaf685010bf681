"""User accounts and API keys, stored beside the conversations.

An account is a login (``username``, stored lower-case so ``Alice`` and
``alice`` are one account) and a ``user_id``, the owner id of its
conversations, memories and plugin state. The ``user_id`` is drawn at random
when the account is created, so an account never inherits data it did not
create: not a library or CLI user's of the same name (``mongars chat --user
alice`` writes under ``alice``), nor a deleted account's. An operator gives a
library user's data to an account explicitly (:meth:`AccountStore.link`).
"""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from mongars_core.errors import DuplicateRecordError, InvalidInputError, MongarsError
from mongars_core.storage.models import (
    AccountRecord,
    ApiKeyRecord,
    ConversationRecord,
    MemoryRecord,
    PluginStateRecord,
    TurnRecord,
    UserRecord,
)
from mongars_core.storage.store import Store
from mongars_core.types import utcnow
from mongars_server.password_policy import password_problem
from mongars_server.security import Passwords, hash_api_key, new_api_key

# Who made an account (AccountRecord.created_by).
REGISTERED = None  # the person registered it over HTTP
OPERATOR = "operator"  # `mongars users create|create-admin`


def new_user_id() -> str:
    """A fresh conversation-data id for a new account (see AccountRecord)."""
    return "acct-" + secrets.token_hex(10)


def fold(username: str) -> str:
    """The stored form of a username: unique regardless of case."""
    return username.casefold()


class AccountExistsError(MongarsError):
    """The username is taken."""


class WeakPasswordError(InvalidInputError):
    """The password is too short, trivial or common."""


class AccountDataError(MongarsError):
    """A library user's data cannot be given to this account (the message says why)."""


class LastAdministratorError(MongarsError):
    """Deleting this account would leave the server without an administrator."""


def check_password(password: str, username: str) -> None:
    """Raise :class:`WeakPasswordError` when ``password`` is refused for ``username``."""
    problem = password_problem(password, username)
    if problem is not None:
        raise WeakPasswordError(problem)


class AccountStore:
    """Accounts (argon2 password hashes) and API keys (SHA-256 of the key)."""

    def __init__(self, store: Store, passwords: Passwords | None = None) -> None:
        self.store = store
        self.passwords = passwords or Passwords()

    async def create(
        self,
        username: str,
        password: str,
        *,
        is_admin: bool = False,
        created_by: str | None = REGISTERED,
        data_of: str | None = None,
    ) -> AccountRecord:
        """A new account with its own, empty data; or, with ``data_of``, the data of
        that library user (which no other account may own)."""
        username = fold(username)
        check_password(password, username)
        if data_of is not None:
            await self._check_adoptable(data_of)
            user_id = data_of
        else:
            user_id = await self._fresh_user_id()
        record = AccountRecord(
            username=username,
            user_id=user_id,
            password_hash=await self.passwords.hash(password),
            is_admin=is_admin,
            created_at=utcnow(),
            created_by=created_by,
        )
        try:
            async with self.store.session(write=True) as session:
                session.add(record)
                await session.commit()
        except DuplicateRecordError:
            if data_of is not None and await self.owner_of(data_of) is not None:
                raise AccountDataError(f"another account owns {data_of!r}'s data") from None
            raise AccountExistsError(f"the username {username!r} is taken") from None
        return record

    async def _fresh_user_id(self) -> str:
        while True:  # 80 random bits: a clash with a library user is all but impossible
            user_id = new_user_id()
            if not await self.store.user_exists(user_id):
                return user_id

    async def _check_adoptable(self, library_user: str) -> None:
        owner = await self.owner_of(library_user)
        if owner is not None:
            raise AccountDataError(
                f"{library_user!r}'s data already belongs to the account {owner.username!r}"
            )
        if not await self.store.user_exists(library_user):
            raise AccountDataError(f"there is no library user {library_user!r} with data")

    async def get(self, username: str) -> AccountRecord | None:
        folded = fold(username)
        async with self.store.session() as session:
            account = await session.get(AccountRecord, folded)
            if account is not None:
                return account
            # Accounts made before usernames were folded keep their stored case.
            rows = await session.execute(
                select(AccountRecord).where(func.lower(AccountRecord.username) == folded).limit(2)
            )
            found = list(rows.scalars())
            return found[0] if len(found) == 1 else None

    async def owner_of(self, user_id: str) -> AccountRecord | None:
        """The account whose data ``user_id`` is, if any."""
        async with self.store.session() as session:
            rows = await session.execute(
                select(AccountRecord).where(AccountRecord.user_id == user_id)  # type: ignore[arg-type]
            )
            return rows.scalars().first()

    async def authenticate(self, username: str, password: str) -> AccountRecord | None:
        """The account when the password is right, else ``None`` (same time either way)."""
        account = await self.get(username)
        if account is None:
            # Hash anyway, so response time does not tell which usernames exist.
            await self.passwords.hash(password)
            return None
        if not await self.passwords.verify(account.password_hash, password):
            return None
        return account

    async def change_password(self, username: str, new_password: str) -> AccountRecord:
        """Set the password; bumping the password version ends every session and ticket."""
        account = await self.get(username)
        if account is None:
            raise LookupError(username)
        check_password(new_password, account.username)
        new_hash = await self.passwords.hash(new_password)
        async with self.store.session(write=True) as session:
            account = await session.get(AccountRecord, account.username)
            if account is None:
                raise LookupError(username)
            account.password_hash = new_hash
            account.password_version += 1
            await session.commit()
            return account

    async def set_admin(self, username: str, is_admin: bool) -> None:
        async with self.store.session(write=True) as session:
            await session.execute(
                update(AccountRecord)
                .where(AccountRecord.username == fold(username))  # type: ignore[arg-type]
                .values(is_admin=is_admin)
            )
            await session.commit()

    async def list_accounts(self, offset: int = 0, limit: int = 100) -> list[AccountRecord]:
        async with self.store.session() as session:
            rows = await session.execute(
                select(AccountRecord).order_by(AccountRecord.username).offset(offset).limit(limit)
            )
            return list(rows.scalars())

    async def count_admins(self) -> int:
        async with self.store.session() as session:
            rows = await session.execute(
                select(func.count()).select_from(AccountRecord).where(AccountRecord.is_admin)  # type: ignore[arg-type]
            )
            return int(rows.scalar_one())

    # -- data ownership --------------------------------------------------------------

    async def link(self, username: str, library_user: str) -> AccountRecord:
        """Give ``library_user``'s data (``mongars chat --user NAME``) to an account.

        Refused when another account owns that data, and when the account has
        conversations or memories of its own (they would be hidden). The
        account's sessions end (tokens carry the ``user_id``); its keys follow.
        """
        account = await self.get(username)
        if account is None:
            raise LookupError(username)
        if account.user_id == library_user:
            return account
        await self._check_adoptable(library_user)
        if await self._has_data(account.user_id):
            raise AccountDataError(
                f"the account {account.username!r} has conversations or memories of its own: "
                "delete them first (`mongars users delete` or DELETE /api/v1/memories)"
            )
        async with self.store.session(write=True) as session:
            record = await session.get(AccountRecord, account.username)
            if record is None:
                raise LookupError(username)
            old = record.user_id
            record.user_id = library_user
            await session.execute(
                update(ApiKeyRecord)
                .where(
                    ApiKeyRecord.username == record.username,  # type: ignore[arg-type]
                    ApiKeyRecord.account_user_id == old,  # type: ignore[arg-type]
                )
                .values(account_user_id=library_user)
            )
            await session.commit()
            return record

    async def _has_data(self, user_id: str) -> bool:
        async with self.store.session() as session:
            for table, owner in (
                (TurnRecord, col(TurnRecord.user_id)),
                (MemoryRecord, col(MemoryRecord.user_id)),
            ):
                rows = await session.execute(
                    select(func.count()).select_from(table).where(owner == user_id)
                )
                if rows.scalar_one():
                    return True
        return False

    async def delete(
        self, username: str, *, keep_data: bool = False, allow_last_admin: bool = False
    ) -> AccountRecord:
        """Delete an account and its API keys, and (unless ``keep_data``) its
        conversations, memories and plugin state. Kept data stays under the
        account's ``user_id``, as a library user an operator can link again.
        Raises :class:`LastAdministratorError` for the only administrator unless
        ``allow_last_admin``."""
        account = await self.get(username)
        if account is None:
            raise LookupError(username)
        async with self.store.session(write=True) as session:
            if account.is_admin and not allow_last_admin:
                await self._refuse_last_admin(session, account)
            await session.execute(
                delete(ApiKeyRecord).where(ApiKeyRecord.username == account.username)  # type: ignore[arg-type]
            )
            await session.execute(
                delete(AccountRecord).where(AccountRecord.username == account.username)  # type: ignore[arg-type]
            )
            if not keep_data:
                for table, owner in (
                    (MemoryRecord, col(MemoryRecord.user_id)),
                    (TurnRecord, col(TurnRecord.user_id)),
                    (ConversationRecord, col(ConversationRecord.user_id)),
                    (PluginStateRecord, col(PluginStateRecord.user_id)),
                ):
                    await session.execute(delete(table).where(owner == account.user_id))
                await session.execute(
                    delete(UserRecord).where(UserRecord.id == account.user_id)  # type: ignore[arg-type]
                )
            await session.commit()
        return account

    async def check_deletable(
        self, username: str, *, allow_last_admin: bool = False
    ) -> AccountRecord:
        """The account, or :class:`LastAdministratorError` when :meth:`delete` would
        refuse it: asked before its data is forgotten (``Assistant.forget_user``), so
        an account that stays never loses its data to a deletion that did not happen."""
        account = await self.get(username)
        if account is None:
            raise LookupError(username)
        if account.is_admin and not allow_last_admin:
            async with self.store.session() as session:
                await self._refuse_last_admin(session, account)
        return account

    async def _refuse_last_admin(self, session: AsyncSession, account: AccountRecord) -> None:
        admins = await session.execute(
            select(func.count()).select_from(AccountRecord).where(AccountRecord.is_admin)  # type: ignore[arg-type]
        )
        if admins.scalar_one() <= 1:
            raise LastAdministratorError(
                f"{account.username!r} is the last administrator: make another "
                "one first (mongars users create-admin)"
            )

    # -- API keys --------------------------------------------------------------------

    async def create_key(self, username: str, name: str) -> tuple[ApiKeyRecord, str]:
        """A new key for ``username``: the record and the key, shown only this once."""
        account = await self.get(username)
        if account is None:
            raise LookupError(username)
        key = new_api_key()
        record = ApiKeyRecord(
            username=account.username,
            name=name,
            prefix=key[:10],
            key_hash=hash_api_key(key),
            account_user_id=account.user_id,
            created_at=utcnow(),
        )
        async with self.store.session(write=True) as session:
            session.add(record)
            await session.commit()
        return record, key

    async def list_keys(self, username: str) -> list[ApiKeyRecord]:
        async with self.store.session() as session:
            rows = await session.execute(
                select(ApiKeyRecord)
                .where(ApiKeyRecord.username == fold(username))  # type: ignore[arg-type]
                .order_by(ApiKeyRecord.id)  # type: ignore[arg-type]
            )
            return list(rows.scalars())

    async def revoke_key(self, username: str, key_id: int) -> bool:
        """Revoke one of ``username``'s keys; ``False`` when they have no such live key."""
        async with self.store.session(write=True) as session:
            result = await session.execute(
                update(ApiKeyRecord)
                .where(
                    ApiKeyRecord.id == key_id,  # type: ignore[arg-type]
                    ApiKeyRecord.username == fold(username),  # type: ignore[arg-type]
                    ApiKeyRecord.revoked_at.is_(None),  # type: ignore[union-attr]
                )
                .values(revoked_at=utcnow())
            )
            await session.commit()
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def revoke_all_keys(self, username: str) -> list[ApiKeyRecord]:
        """Revoke every live key of ``username``; returns the keys revoked."""
        live = [key for key in await self.list_keys(username) if key.revoked_at is None]
        if not live:
            return []
        now = utcnow()
        async with self.store.session(write=True) as session:
            await session.execute(
                update(ApiKeyRecord)
                .where(
                    ApiKeyRecord.id.in_([key.id for key in live]),  # type: ignore[union-attr]
                    ApiKeyRecord.revoked_at.is_(None),  # type: ignore[union-attr]
                )
                .values(revoked_at=now)
            )
            await session.commit()
        for key in live:
            key.revoked_at = now
        return live

    async def account_for_key(self, key: str) -> AccountRecord | None:
        """The owner of a live key, recording when it was last used.

        A key is live while it is not revoked and was made for the account's
        current ``user_id``: a deleted account's key never opens a new account
        of the same name.
        """
        async with self.store.session() as session:
            rows = await session.execute(
                select(ApiKeyRecord, AccountRecord)
                .join(AccountRecord, ApiKeyRecord.username == AccountRecord.username)  # type: ignore[arg-type]
                .where(
                    ApiKeyRecord.key_hash == hash_api_key(key),  # type: ignore[arg-type]
                    ApiKeyRecord.revoked_at.is_(None),  # type: ignore[union-attr]
                    ApiKeyRecord.account_user_id == AccountRecord.user_id,  # type: ignore[arg-type]
                )
            )
            found = rows.first()
            if found is None:
                return None
            api_key, account = found
            now = utcnow()
            if api_key.last_used_at is None or _older_than(api_key.last_used_at, now, 60):
                api_key.last_used_at = now
                await session.commit()
            return account


def _older_than(moment: datetime, now: datetime, seconds: float) -> bool:
    if moment.tzinfo is None:
        return True
    return (now - moment).total_seconds() > seconds
