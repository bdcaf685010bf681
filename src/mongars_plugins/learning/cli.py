"""``mongars learn``: consent, datasets, runs, approvals and the scheduler's queue.

Every command takes ``--json``; errors end the command with one line on
stderr and status 1 (the core CLI's conventions, :mod:`mongars_core.cli`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import typer
from rich.table import Table

from mongars_core.cli import (
    async_command,
    cli_settings,
    err,
    fail,
    out,
    printable,
    progress_reporter,
)
from mongars_core.pipeline import Assistant
from mongars_core.settings import Settings
from mongars_plugins.learning.runner import Learner
from mongars_plugins.learning.runs import RunRecord, run_json

learn_app = typer.Typer(
    help="Self-training: consent, datasets, runs, approvals (docs/learning.md).",
    no_args_is_help=True,
)

User = Annotated[str, typer.Option("--user", "-u", help="The user.")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON.")]
RunId = Annotated[str, typer.Argument(help="The run's id (`mongars learn runs`).")]


@asynccontextmanager
async def _learner(*, started: bool = False) -> AsyncIterator[Learner]:
    """The learner over the store and plugins. Commands that read text (``dataset``,
    ``run``, ``validate``) start the plugins, so a scrubber that prepares itself at
    start-up is ready; the others need no chat pipeline and skip that (no memory
    index to warm up: well under a second)."""
    from mongars_core.assembly import unstarted_services
    from mongars_plugins.learning import learner

    if started:
        async with await Assistant.from_settings(_quiet(cli_settings())) as assistant:
            yield learner(assistant.services)
        return
    async with unstarted_services(cli_settings()) as services:
        yield learner(services)


def _quiet(settings: Settings) -> Settings:
    """``settings`` without the idle-time scheduler: a command never trains on its own."""
    section = dict(getattr(settings, "learning", None) or {})
    return settings.model_copy(update={"learning": {**section, "schedule": False}})


def _plain(text: str) -> str:
    """``text`` for plain standard output: control characters escaped, no markup."""
    return printable(text).replace("\\[", "[")


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False, indent=2) + "\n")


def _print_run(run: RunRecord, learner: Learner, as_json: bool) -> None:
    data = run_json(run, learner.registry)
    if as_json:
        _print_json(data)
        return
    out.print(_run_line(data), highlight=False)


def _run_line(data: dict[str, Any]) -> str:
    m = data["metrics"]
    line = f"{data['id']}  {data['user_id']}  {data['status']}"
    if m.get("heldout_perplexity_before") is not None:
        line += (
            f"  held-out {m['heldout_perplexity_before']:.2f} -> "
            f"{m['heldout_perplexity_after']:.2f}"
            f"  general {m['general_perplexity_before']:.2f} -> "
            f"{m['general_perplexity_after']:.2f}"
        )
    if data["energy_wh"] is not None:
        estimate = " (estimate)" if data["energy"]["estimated"] else ""
        line += f"  {data['energy_wh']:.2f} Wh{estimate}, {data['co2e_g']:.2f} gCO2e"
    if data["reason"]:
        line += f"  reason: {data['reason']}"
    return printable(line)


async def _consent(user: str, enabled: bool, as_json: bool) -> None:
    async with _learner() as learner:
        value = await learner.set_consent(user, enabled, by="operator")
    if as_json:
        _print_json({"user_id": user, **value})
    else:
        state = "on" if enabled else "off"
        out.print(f"{printable(user)}: learning {state}", highlight=False)


@learn_app.command("enable")
@async_command
async def enable(user: User, as_json: Json = False) -> None:
    """Opt a user in: their scrubbed turns may be trained on."""
    await _consent(user, True, as_json)


@learn_app.command("disable")
@async_command
async def disable(user: User, as_json: Json = False) -> None:
    """Opt a user out: none of their text enters a dataset from now on."""
    await _consent(user, False, as_json)


@learn_app.command("dataset")
@async_command
async def dataset(user: User, as_json: Json = False) -> None:
    """Print exactly what a run for the user would train on and hold out (scrubbed)."""
    async with _learner(started=True) as learner:
        data = await learner.dataset(user)
    if as_json:
        _print_json(data.as_dict())
        return
    skipped = ", ".join(f"{n} {why}" for why, n in sorted(data.skipped.items())) or "none"
    lines = [
        f"{data.size} examples ({len(data.train)} to train on, {len(data.heldout)} held out), "
        f"sha256 {data.sha256}; left out: {skipped}"
    ]
    for part, examples in (("train", data.train), ("held out", data.heldout)):
        for example in examples:
            prompt = f"{example.prompt!r} -> " if example.prompt else ""
            lines.append(f"{part}\t{example.kind}\t{prompt}{example.response!r}")
    # Plain lines, never wrapped or read as markup: one example a line, to read or grep.
    sys.stdout.write("\n".join(_plain(line) for line in lines) + "\n")


@learn_app.command("run")
@async_command
async def run(user: User, as_json: Json = False) -> None:
    """Train an adapter for the user now, evaluate it, and leave it awaiting approval.

    Ctrl-C cancels it: nothing of it is kept but its record."""
    progress = progress_reporter("learning") if err.is_terminal and not as_json else None
    async with _learner(started=True) as learner:
        record = await learner.run(user, trigger="hand", by="operator", progress=progress)
        _print_run(record, learner, as_json)


@learn_app.command("runs")
@async_command
async def runs(
    user: Annotated[str | None, typer.Option("--user", "-u", help="Only this user's.")] = None,
    as_json: Json = False,
) -> None:
    """Every run (or a user's): status, perplexities, energy and carbon, latest validation."""
    async with _learner() as learner:
        found = await learner.runs(user)
        rows = [run_json(r, learner.registry) for r in found]
    if as_json:
        _print_json(rows)
        return
    if not rows:
        out.print("no runs yet")
        return
    table = Table()
    table.add_column("id", no_wrap=True, min_width=26)  # whole, to copy into `learn approve`
    for header in ("user", "status", "held-out ppl", "general ppl", "Wh", "gCO2e", "validation"):
        table.add_column(header)
    for row in rows:
        m = row["metrics"]
        held = _pair(m.get("heldout_perplexity_before"), m.get("heldout_perplexity_after"))
        general = _pair(m.get("general_perplexity_before"), m.get("general_perplexity_after"))
        watt_hours = "" if row["energy_wh"] is None else f"{row['energy_wh']:.2f}"
        if row["energy"] and row["energy"]["estimated"]:
            watt_hours += " (est.)"
        carbon = "" if row["co2e_g"] is None else f"{row['co2e_g']:.2f}"
        validation = row["validation"]
        checked = ""
        if validation:
            verdict = "passed" if validation["passed"] else "REGRESSED"
            checked = f"{verdict} {validation['at'][:16]}"
        table.add_row(
            row["id"],
            printable(row["user_id"]),
            row["status"],
            held,
            general,
            watt_hours,
            carbon,
            checked,
        )
    out.print(table)
    for row in rows:  # below the table, whole: a reason is a sentence
        if row["reason"]:
            sys.stdout.write(_plain(f"{row['id']}: {row['reason']}") + "\n")


def _pair(before: float | None, after: float | None) -> str:
    if before is None:
        return ""
    return f"{before:.2f} -> {after:.2f}" if after is not None else f"{before:.2f}"


@learn_app.command("status")
@async_command
async def status(as_json: Json = False) -> None:
    """The run going now, the runs awaiting approval, and the scheduler's queue."""
    async with _learner() as learner:
        data = await learner.status()
    if as_json:
        _print_json(data)
        return
    running = data["running"]
    if running:
        step = running["progress"]
        where = f" (step {step['step']}/{step['steps']})" if step else ""
        out.print(f"running: {running['run_id']} for {printable(running['user_id'])}{where}")
    else:
        out.print("running: nothing")
    out.print(f"awaiting approval: {len(data['awaiting_approval'])}")
    for row in data["awaiting_approval"]:
        out.print("  " + _run_line(row), highlight=False)
    users = data["consenting_users"]
    out.print(
        f"queue: {len(data['queue']) or 'nobody'} "
        f"({users} consenting user{'' if users == 1 else 's'}; a scheduled run needs "
        f"{data['min_new_examples']} new examples)",
        highlight=False,
    )
    for item in data["queue"]:
        out.print(f"  {printable(item['user_id'])}: {item['new_examples']} new examples")


@learn_app.command("approve")
@async_command
async def approve(run_id: RunId, as_json: Json = False) -> None:
    """Approve a run: its adapter answers its user from now on."""
    async with _learner() as learner:
        _print_run(await learner.approve(run_id, by="operator"), learner, as_json)


@learn_app.command("reject")
@async_command
async def reject(
    run_id: RunId,
    reason: Annotated[str, typer.Option("--reason", help="Why (kept with the run).")] = "",
    as_json: Json = False,
) -> None:
    """Reject a run awaiting approval: its adapter never answers anyone."""
    async with _learner() as learner:
        _print_run(await learner.reject(run_id, by="operator", reason=reason), learner, as_json)


@learn_app.command("cancel")
@async_command
async def cancel(as_json: Json = False) -> None:
    """Stop the run going on this node (in whichever process): nothing of it is kept."""
    async with _learner() as learner:
        holder = learner.request_cancel()
    if holder is None:
        raise fail("no training run is going")
    run_id = holder.run_id.split(":", 1)[0]  # a validation's is its run's
    if as_json:
        _print_json({"run_id": run_id, "cancelling": True})
    else:
        what = "the validation of " if ":" in holder.run_id else ""
        out.print(f"asked {what}{run_id} to stop", highlight=False)


@learn_app.command("validate")
@async_command
async def validate(run_id: RunId, as_json: Json = False) -> None:
    """Measure an active adapter on its user's newer turns now (the scheduler does it too)."""
    async with _learner(started=True) as learner:
        _print_run(await learner.validate(run_id, by="operator"), learner, as_json)


__all__ = ["fail", "learn_app"]
