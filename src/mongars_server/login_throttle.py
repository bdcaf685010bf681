"""Throttled password checks that an attacker cannot turn into a lock-out.

Every password check (login, the password change's current password) goes
through :meth:`LoginThrottle.check`, with the account and the client's address:

* failures per (account, address) are counted strictly: ``login_failure_burst``
  in a row, then ``login_failures_per_minute``; beyond, that address gets 429
  for that account, even with the right password;
* failures per account, from every address together, are counted more loosely
  (:data:`ACCOUNT_WIDE_FACTOR` times the burst and the rate); beyond, a wrong
  password gets 429 rather than 401, and a right one is let through only from an
  address that has not failed for this account in the last
  :data:`FAILED_ADDRESS_WINDOW_S` seconds, so the owner still logs in while
  someone elsewhere keeps guessing;
* the password is hashed and compared on every try, throttled or not, so the
  time of an answer does not say whether the password was right.

A right password gives its tokens back. With Redis the counts are shared by every
server process.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from mongars_server.limits import RateLimiter, RedisRateLimiter
from mongars_server.settings import ServerSettings

T = TypeVar("T")

ACCOUNT_WIDE_FACTOR = 5
"""How much looser the per-account count is than the per-(account, address) one."""

FAILED_ADDRESS_WINDOW_S = 15 * 60
"""How long an address that failed for an account stays suspect while that
account is being guessed at from many addresses."""


class LoginThrottled(Exception):
    """Too many failures: try again in ``wait_s`` seconds."""

    def __init__(self, wait_s: float) -> None:
        super().__init__(f"retry in {wait_s:.0f} s")
        self.wait_s = wait_s


@dataclass
class LoginThrottle:
    per_address: RateLimiter
    """Failures per (account, address): the strict count."""
    per_account: RateLimiter
    """Failures per account from every address: the loose count."""
    failed_addresses: RateLimiter
    """One token per (account, address), spent by a failure, back after the window."""

    @classmethod
    def build(cls, limits: ServerSettings, redis: Any = None, prefix: str = "") -> LoginThrottle:
        def limiter(per_minute: float, burst: int) -> RateLimiter:
            if redis is not None:
                return RedisRateLimiter(redis, per_minute, burst, prefix)
            return RateLimiter(per_minute, burst)

        rate, burst = limits.login_failures_per_minute, limits.login_failure_burst
        return cls(
            per_address=limiter(rate, burst),
            per_account=limiter(rate * ACCOUNT_WIDE_FACTOR, burst * ACCOUNT_WIDE_FACTOR),
            failed_addresses=limiter(60 / FAILED_ADDRESS_WINDOW_S, 1),
        )

    async def check(
        self, account: str, address: str, verify: Callable[[], Awaitable[T | None]]
    ) -> T | None:
        """``verify()``'s result (``None``: wrong password), counted against ``account``
        from ``address``. Raises :class:`LoginThrottled` when this try may not count."""
        name = account.casefold()
        pair = f"login:{name}|{address}"
        wide = f"login-account:{name}"
        failed = f"login-failed:{name}|{address}"
        pair_wait = await self.per_address.take(pair)
        wide_wait = await self.per_account.take(wide)
        result = await verify()  # every time: the answer's timing says nothing
        if pair_wait > 0:
            if wide_wait == 0:
                await self.per_account.take(wide, -1.0)
            raise LoginThrottled(pair_wait)
        if result is None:
            await self.failed_addresses.take(failed)
            if wide_wait > 0:
                raise LoginThrottled(wide_wait)
            return None
        if wide_wait > 0:
            # The account is being guessed at: only an address that has not failed
            # for it lately gets in.
            if await self.failed_addresses.take(failed) > 0:
                raise LoginThrottled(wide_wait)
            await self.failed_addresses.take(failed, -1.0)
        else:
            await self.per_account.take(wide, -1.0)
        await self.per_address.take(pair, -1.0)
        return result
