"""User accounts and API keys, stored beside the conversations."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update

from mongars_core.errors import DuplicateRecordError, MongarsError
from mongars_core.storage.models import AccountRecord, ApiKeyRecord
from mongars_core.storage.store import Store
from mongars_core.types import utcnow
from mongars_server.security import Passwords, hash_api_key, new_api_key


class AccountExistsError(MongarsError):
    """The username is taken."""


class AccountStore:
    """Accounts (argon2 password hashes) and API keys (SHA-256 of the key)."""

    def __init__(self, store: Store, passwords: Passwords | None = None) -> None:
        self.store = store
        self.passwords = passwords or Passwords()

    async def create(
        self, username: str, password: str, *, is_admin: bool = False
    ) -> AccountRecord:
        record = AccountRecord(
            username=username,
            password_hash=await self.passwords.hash(password),
            is_admin=is_admin,
            created_at=utcnow(),
        )
        try:
            async with self.store.session(write=True) as session:
                session.add(record)
                await session.commit()
        except DuplicateRecordError:
            raise AccountExistsError(f"the username {username!r} is taken") from None
        await self.store.ensure_user(username)
        return record

    async def get(self, username: str) -> AccountRecord | None:
        async with self.store.session() as session:
            return await session.get(AccountRecord, username)

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
        new_hash = await self.passwords.hash(new_password)
        async with self.store.session(write=True) as session:
            account = await session.get(AccountRecord, username)
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
                .where(AccountRecord.username == username)  # type: ignore[arg-type]
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

    # -- API keys --------------------------------------------------------------------

    async def create_key(self, username: str, name: str) -> tuple[ApiKeyRecord, str]:
        """A new key for ``username``: the record and the key, shown only this once."""
        key = new_api_key()
        record = ApiKeyRecord(
            username=username,
            name=name,
            prefix=key[:10],
            key_hash=hash_api_key(key),
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
                .where(ApiKeyRecord.username == username)  # type: ignore[arg-type]
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
                    ApiKeyRecord.username == username,  # type: ignore[arg-type]
                    ApiKeyRecord.revoked_at.is_(None),  # type: ignore[union-attr]
                )
                .values(revoked_at=utcnow())
            )
            await session.commit()
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def account_for_key(self, key: str) -> AccountRecord | None:
        """The owner of a live key, recording when it was last used."""
        async with self.store.session() as session:
            rows = await session.execute(
                select(ApiKeyRecord, AccountRecord)
                .join(AccountRecord, ApiKeyRecord.username == AccountRecord.username)  # type: ignore[arg-type]
                .where(
                    ApiKeyRecord.key_hash == hash_api_key(key),  # type: ignore[arg-type]
                    ApiKeyRecord.revoked_at.is_(None),  # type: ignore[union-attr]
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
