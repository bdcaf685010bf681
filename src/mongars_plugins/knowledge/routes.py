"""The document routes (``/api/v1/documents``) and the RAG context route.

Every caller works on their own documents and reads the shared collections;
administrators alone write shared ones (``shared=true``; 403 otherwise).
Another user's document answers 404, as an unknown one does.

An upload is a multipart form (``file``, optional ``collection``, ``title``,
``shared``). Its file is read at most ``knowledge.max_file_bytes`` (+1) bytes
far: a larger one is refused with 413 (the multipart body as a whole is bounded
by ``server.max_upload_bytes`` before any route runs). With ``?progress=1`` the
answer is a stream of NDJSON lines (``{"stage": "embed", "done": 64, "total":
300}``...) ending in ``{"document": {...}}`` or ``{"error": {...}}``, so a client
shows how indexing goes; without it, 201 and the document. Imported only when
the server assembles, so the plugin needs no FastAPI otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Annotated, Literal

from fastapi import APIRouter, Body, File, Form, Path, Query, Response, UploadFile
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from mongars_core.errors import MongarsError
from mongars_core.retrieval import retrieve
from mongars_core.types import Passage, RetrievalQuery
from mongars_plugins.knowledge import library
from mongars_plugins.knowledge.documents import CollectionInfo, DocumentInfo, Library, Progress
from mongars_plugins.knowledge.errors import DocumentTooLargeError, SharedCollectionError
from mongars_plugins.knowledge.settings import KNOWLEDGE
from mongars_server.deps import Caller, CurrentCaller, State
from mongars_server.errors import ApiError, classify

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1/documents", tags=["documents"])
rag_router = APIRouter(prefix="/api/v1/review", tags=["review"])

DocumentId = Annotated[int, Path(ge=1, le=2**62)]
CollectionName = Annotated[str, Path(min_length=1, max_length=100)]
READ_BLOCK = 1 << 16


class DocumentOut(BaseModel):
    document: DocumentInfo


class DocumentText(BaseModel):
    document: DocumentInfo
    text: str


class DocumentList(BaseModel):
    documents: list[DocumentInfo]


class CollectionList(BaseModel):
    collections: list[CollectionInfo]


class Passages(BaseModel):
    passages: list[Passage]


class RetentionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    retention_days: Annotated[int, Field(ge=1, le=36_500)] | None = None
    shared: bool = False


class RagIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: Annotated[str, Field(min_length=1, max_length=2000)]
    limit: Annotated[int, Field(ge=1, le=50)] = 10
    kinds: list[Literal["memory", "document"]] | None = None
    collections: list[Annotated[str, Field(min_length=1, max_length=100)]] | None = None
    neighbours: Annotated[int, Field(ge=0, le=5)] = 0


class NumberedPassage(Passage):
    number: int = Field(description="Its place in the answer, 1 first: what ``[n]`` cites.")


class RagOut(BaseModel):
    query: str
    passages: list[NumberedPassage]


def _library(server: State) -> Library:
    return library(server.assistant.services)


def _shared_needs_admin(caller: Caller, shared: bool) -> None:
    if shared and not caller.is_admin:
        raise ApiError(403, "only administrators write shared collections", "forbidden")


@contextlib.contextmanager
def _answered() -> Iterator[None]:
    try:
        yield
    except SharedCollectionError as exc:
        raise ApiError(403, str(exc), "forbidden") from None
    except DocumentTooLargeError as exc:
        raise ApiError(413, str(exc), "document_too_large") from None


async def _read_upload(server: State, file: UploadFile) -> bytes:
    """The uploaded file, read block by block and refused past ``max_file_bytes``."""
    limit = server.settings.section(KNOWLEDGE).max_file_bytes
    blocks: list[bytes] = []
    size = 0
    while block := await file.read(READ_BLOCK):
        size += len(block)
        if size > limit:
            raise ApiError(
                413, f"the file is larger than the limit of {limit} bytes", "document_too_large"
            )
        blocks.append(block)
    return b"".join(blocks)


def _streamed(work: Callable[[Progress], Awaitable[DocumentInfo]]) -> StreamingResponse:
    """Run ``work`` and stream its progress, then its document or error, as NDJSON."""
    lines: asyncio.Queue[dict[str, object] | None] = asyncio.Queue()

    def progress(stage: str, done: int, total: int | None) -> None:
        lines.put_nowait({"stage": stage, "done": done, "total": total})

    async def run() -> None:
        try:
            info = await work(progress)
            lines.put_nowait({"document": info.model_dump(mode="json")})
        except MongarsError as exc:
            answer = classify(exc)
            if isinstance(exc, SharedCollectionError):
                answer = ApiError(403, str(exc), "forbidden")
            elif isinstance(exc, DocumentTooLargeError):
                answer = ApiError(413, str(exc), "document_too_large")
            lines.put_nowait(
                {
                    "error": {
                        "status": answer.status_code,
                        "code": answer.code,
                        "detail": answer.detail,
                    }
                }
            )
        except Exception:
            log.exception("knowledge: indexing an upload failed")
            lines.put_nowait(
                {"error": {"status": 500, "code": "internal_error", "detail": "indexing failed"}}
            )
        finally:
            lines.put_nowait(None)

    async def body() -> AsyncIterator[bytes]:
        task = asyncio.create_task(run())
        try:
            while (line := await lines.get()) is not None:
                yield (json.dumps(line) + "\n").encode()
        finally:
            if not task.done():  # the client went away: nothing was written yet
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return StreamingResponse(body(), media_type="application/x-ndjson")


@router.post("", status_code=201, response_model=DocumentOut)
async def upload(
    server: State,
    caller: CurrentCaller,
    file: Annotated[UploadFile, File(description="A .txt, .md, .html or .pdf file.")],
    collection: Annotated[str | None, Form(max_length=100)] = None,
    title: Annotated[str | None, Form(max_length=300)] = None,
    shared: Annotated[bool, Form()] = False,
    progress: Annotated[bool, Query(description="Stream NDJSON progress lines.")] = False,
) -> DocumentOut | StreamingResponse:
    """Add a document to one of your collections (administrators: ``shared=true`` for a
    shared one). A file that cannot be read answers 422 and leaves nothing."""
    _shared_needs_admin(caller, shared)
    data = await _read_upload(server, file)
    found = _library(server)
    filename = file.filename or "document"

    async def work(report: Progress | None) -> DocumentInfo:
        return await found.add(
            caller.user_id,
            filename,
            data,
            collection=collection or None,
            title=title or None,
            shared=shared,
            admin=caller.is_admin,
            progress=report,
        )

    if progress:
        return _streamed(work)
    with _answered():
        return DocumentOut(document=await work(None))


@router.get("", response_model=DocumentList)
async def list_documents(
    server: State,
    caller: CurrentCaller,
    collection: Annotated[str | None, Query(max_length=100)] = None,
) -> DocumentList:
    """Your documents and the shared ones (yours first, newest first)."""
    documents = await _library(server).list_documents(caller.user_id, collection)
    return DocumentList(documents=documents)


@router.get("/search", response_model=Passages)
async def search_documents(
    server: State,
    caller: CurrentCaller,
    q: Annotated[str, Query(min_length=1, max_length=2000)],
    limit: Annotated[int, Query(ge=1, le=50)] = 10,
    collection: Annotated[list[str] | None, Query(max_length=100)] = None,
    neighbours: Annotated[int, Query(ge=0, le=5)] = 0,
) -> Passages:
    """The chunks of your documents (and shared ones) most relevant to ``q``, best first."""
    passages = await _library(server).search(
        caller.user_id, q, limit=limit, collections=collection, neighbours=neighbours
    )
    return Passages(passages=passages)


@router.get("/collections", response_model=CollectionList)
async def list_collections(server: State, caller: CurrentCaller) -> CollectionList:
    """The collections you can read, with their retention and document counts."""
    rows = await _library(server).collections(caller.user_id, admin=caller.is_admin)
    return CollectionList(collections=rows)


@router.put("/collections/{name}", response_model=CollectionInfo)
async def set_retention(
    server: State,
    caller: CurrentCaller,
    name: CollectionName,
    change: Annotated[RetentionIn, Body()],
) -> CollectionInfo:
    """Keep a collection's documents ``retention_days`` days from when each was added or
    updated (``null``: for ever). Expired ones leave search at once."""
    _shared_needs_admin(caller, change.shared)
    with _answered():
        return await _library(server).set_retention(
            caller.user_id,
            name,
            change.retention_days,
            shared=change.shared,
            admin=caller.is_admin,
        )


@router.get("/{document_id}", response_model=DocumentText)
async def get_document(
    server: State, caller: CurrentCaller, document_id: DocumentId
) -> DocumentText:
    """One document you can read, with the text extracted from it."""
    info, text = await _library(server).get(caller.user_id, document_id)
    return DocumentText(document=info, text=text)


@router.put("/{document_id}", response_model=DocumentOut)
async def replace_document(
    server: State,
    caller: CurrentCaller,
    document_id: DocumentId,
    file: Annotated[UploadFile, File(description="The new content.")],
    title: Annotated[str | None, Form(max_length=300)] = None,
    progress: Annotated[bool, Query(description="Stream NDJSON progress lines.")] = False,
) -> DocumentOut | StreamingResponse:
    """Replace a document's content, keeping its id (all or nothing)."""
    data = await _read_upload(server, file)
    found = _library(server)
    filename = file.filename or "document"

    async def work(report: Progress | None) -> DocumentInfo:
        return await found.update(
            caller.user_id,
            document_id,
            filename,
            data,
            title=title or None,
            admin=caller.is_admin,
            progress=report,
        )

    if progress:
        return _streamed(work)
    with _answered():
        return DocumentOut(document=await work(None))


@router.delete("/{document_id}", status_code=204)
async def delete_document(
    server: State, caller: CurrentCaller, document_id: DocumentId
) -> Response:
    """Delete a document (404 when you cannot see it, 403 a shared one unless you are an
    administrator); search stops finding it at once."""
    with _answered():
        await _library(server).delete(caller.user_id, document_id, admin=caller.is_admin)
    return Response(status_code=204)


@rag_router.post("/rag-context", response_model=RagOut)
async def rag_context(
    server: State, caller: CurrentCaller, request: Annotated[RagIn, Body()]
) -> RagOut:
    """The passages of your memories and documents (and shared ones) most relevant to
    ``query``, ranked and numbered, each with its source: what a model would be given."""
    kinds = frozenset(request.kinds or ("memory", "document"))
    query = RetrievalQuery(
        user_id=caller.user_id,
        text=request.query,
        kinds=kinds,
        limit=request.limit,
        neighbours=request.neighbours,
        collections=request.collections,
    )
    passages = await retrieve(server.assistant.services, query)
    return RagOut(
        query=request.query,
        passages=[
            NumberedPassage(**passage.model_dump(), number=number)
            for number, passage in enumerate(passages, start=1)
        ],
    )
