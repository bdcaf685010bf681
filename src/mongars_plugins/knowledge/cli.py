"""``mongars docs``: add, update, list, search and delete a user's documents.

Commands act as the operator: ``--shared`` writes the shared collections every
user reads. Every command takes ``--user`` and ``--json``; errors end the
command with one line on stderr and status 1 (:mod:`mongars_core.cli`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from mongars_core.cli import async_command, cli_settings, err, fail, out, printable
from mongars_core.cli import progress_reporter as bars
from mongars_core.validation import check_id
from mongars_plugins.knowledge.documents import DocumentInfo, Library, Progress

docs_app = typer.Typer(
    help="A user's documents: add, update, list, search, delete (docs/knowledge.md).",
    no_args_is_help=True,
)

User = Annotated[str, typer.Option("--user", "-u", help="The user.")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON.")]
Collection = Annotated[
    str | None,
    typer.Option(
        "--collection", "-c", help="The collection (default: knowledge.default_collection)."
    ),
]
Shared = Annotated[bool, typer.Option("--shared", help="A shared collection, read by every user.")]
DocumentId = Annotated[int, typer.Argument(help="The document's id (`mongars docs list`).", min=1)]


@asynccontextmanager
async def _library() -> AsyncIterator[Library]:
    """The library over the store and the embedder; no chat pipeline is started."""
    from mongars_core.assembly import unstarted_services
    from mongars_plugins.knowledge import library

    async with unstarted_services(cli_settings()) as services:
        yield library(services)


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False, indent=2, default=str) + "\n")


def _line(info: DocumentInfo) -> str:
    shared = " (shared)" if info.shared else ""
    return printable(
        f"{info.id}  {info.collection}{shared}  {info.title}  {info.filename}  "
        f"{info.size} bytes  {info.chunks} chunks  {info.updated_at:%Y-%m-%d %H:%M}"
    )


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise fail(f"cannot read {path}: {exc.strerror or exc}") from None


def _progress(as_json: bool) -> Progress | None:
    """Progress bars on a terminal (parse, embed per batch, files), none otherwise."""
    return bars("docs") if err.is_terminal and not as_json else None


@docs_app.command("add")
@async_command
async def add(
    files: Annotated[list[Path], typer.Argument(help="Text, Markdown, HTML or PDF files.")],
    user: User = "me",
    collection: Collection = None,
    title: Annotated[
        str | None, typer.Option("--title", "-t", help="The title (one file only).")
    ] = None,
    shared: Shared = False,
    as_json: Json = False,
) -> None:
    """Add files to a collection. Each file is all or nothing: one that can't be read
    is reported and nothing of it stays; the others are still added."""
    check_id("user id", user)
    if title is not None and len(files) != 1:
        raise fail("--title names one document: give one file")
    progress = _progress(as_json)
    added: list[DocumentInfo] = []
    failed: list[dict[str, str]] = []
    async with _library() as found:
        for done, path in enumerate(files):
            try:
                info = await found.add(
                    user,
                    path.name,
                    _read(path),
                    collection=collection,
                    title=title,
                    shared=shared,
                    admin=True,
                    progress=progress,
                )
            except typer.Exit:
                failed.append({"file": str(path), "error": "cannot be read"})
                continue
            except ValueError as exc:  # InvalidInputError: this file only
                failed.append({"file": str(path), "error": str(exc)})
                err.print(f"[bold red]error:[/] {printable(str(exc))}", highlight=False)
                continue
            added.append(info)
            if progress is not None and len(files) > 1:
                progress("files", done + 1, len(files))
            if not as_json:
                out.print(f"added {_line(info)}", highlight=False)
    if as_json:
        _print_json({"added": [i.model_dump(mode="json") for i in added], "failed": failed})
    if failed:
        raise typer.Exit(1)


@docs_app.command("update")
@async_command
async def update_document(
    document_id: DocumentId,
    file: Annotated[Path, typer.Argument(help="The new content.")],
    user: User = "me",
    title: Annotated[str | None, typer.Option("--title", "-t", help="A new title.")] = None,
    as_json: Json = False,
) -> None:
    """Replace a document's content (same id), all or nothing."""
    check_id("user id", user)
    data = _read(file)
    async with _library() as found:
        info = await found.update(
            user, document_id, file.name, data, title=title, admin=True, progress=_progress(as_json)
        )
    if as_json:
        _print_json(info.model_dump(mode="json"))
    else:
        out.print(f"updated {_line(info)}", highlight=False)


@docs_app.command("list")
@async_command
async def list_documents(
    user: User = "me", collection: Collection = None, as_json: Json = False
) -> None:
    """The documents the user can read: their own, then shared ones."""
    check_id("user id", user)
    async with _library() as found:
        documents = await found.list_documents(user, collection)
    if as_json:
        _print_json({"documents": [d.model_dump(mode="json") for d in documents]})
        return
    if not documents:
        out.print("no documents")
        return
    table = Table("id", "collection", "title", "file", "bytes", "chunks", "updated")
    for d in documents:
        table.add_row(
            str(d.id),
            printable(d.collection + (" (shared)" if d.shared else "")),
            printable(d.title),
            printable(d.filename),
            str(d.size),
            str(d.chunks),
            f"{d.updated_at:%Y-%m-%d %H:%M}",
        )
    out.print(table)


@docs_app.command("search")
@async_command
async def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    user: User = "me",
    collection: Annotated[
        list[str] | None, typer.Option("--collection", "-c", help="Only this collection.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=100)] = 5,
    as_json: Json = False,
) -> None:
    """The passages of the user's documents (and shared ones) most relevant to QUERY."""
    check_id("user id", user)
    async with _library() as found:
        passages = await found.search(user, query, limit=limit, collections=collection)
    if as_json:
        _print_json({"passages": [p.model_dump(mode="json") for p in passages]})
        return
    if not passages:
        out.print("nothing found")
        return
    for number, passage in enumerate(passages, start=1):
        out.print(
            f"[bold][{number}] {printable(passage.source)}[/]  (document {passage.document_id}, "
            f"{printable(passage.collection or '')}, score {passage.score:.4f})",
            highlight=False,
        )
        out.print(printable(passage.text), highlight=False)


@docs_app.command("delete")
@async_command
async def delete(document_id: DocumentId, user: User = "me", as_json: Json = False) -> None:
    """Delete a document; search stops finding it at once."""
    check_id("user id", user)
    async with _library() as found:
        await found.delete(user, document_id, admin=True)
    if as_json:
        _print_json({"deleted": document_id})
    else:
        out.print(f"deleted document {document_id}")


@docs_app.command("collections")
@async_command
async def collections(user: User = "me", as_json: Json = False) -> None:
    """The collections the user can read, with their retention."""
    check_id("user id", user)
    async with _library() as found:
        rows = await found.collections(user, admin=True)
    if as_json:
        _print_json({"collections": [row.model_dump() for row in rows]})
        return
    for row in rows:
        keep = "kept for ever" if row.retention_days is None else f"{row.retention_days} days"
        shared = " (shared)" if row.shared else ""
        out.print(
            f"{printable(row.name)}{shared}  {row.documents} documents  {keep}", highlight=False
        )


@docs_app.command("retention")
@async_command
async def retention(
    collection: Annotated[str, typer.Argument(help="The collection.")],
    days: Annotated[
        int | None, typer.Argument(help="Days a document is kept; leave out: for ever.", min=1)
    ] = None,
    user: User = "me",
    shared: Shared = False,
    as_json: Json = False,
) -> None:
    """Set how long a collection keeps its documents (from when each was added or updated)."""
    check_id("user id", user)
    async with _library() as found:
        row = await found.set_retention(user, collection, days, shared=shared, admin=True)
    if as_json:
        _print_json(row.model_dump())
    else:
        keep = "for ever" if days is None else f"{days} days"
        out.print(f"{printable(row.name)}: documents kept {keep}", highlight=False)
