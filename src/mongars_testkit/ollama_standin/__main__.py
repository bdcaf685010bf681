"""``python -m mongars_testkit.ollama_standin``: serve the Ollama stand-in until stopped.

It prints one line, ``mongars ollama stand-in listening on URL``, once it
accepts connections (``--port 0`` picks a free port).
"""

from __future__ import annotations

import argparse
import socket
import sys
from collections.abc import Sequence

from mongars_testkit.ollama_standin.catalogue import DEFAULT_EMBED_MODEL, DEFAULT_MODEL
from mongars_testkit.ollama_standin.server import (
    READY_PREFIX,
    echo_standin,
    local_standin,
    require_uvicorn,
    uvicorn_config,
)


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m mongars_testkit.ollama_standin",
        description="A stand-in that follows Ollama's documented REST API, for tests. "
        "It is not Ollama: the local model (or, with --echo, an echo) answers every model name.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=11434, help="port; 0 picks a free one")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="name of the installed model")
    parser.add_argument("--embed-model", default=DEFAULT_EMBED_MODEL, help="embedding model")
    parser.add_argument(
        "--echo",
        action="store_true",
        help="answer with a fast deterministic echo backend and hashing embedder",
    )
    parser.add_argument(
        "--delay-s", type=float, default=0.0, help="with --echo: seconds between words"
    )
    parser.add_argument(
        "--pullable",
        action="append",
        default=[],
        metavar="NAME",
        help="a model the pretend registry has (repeatable)",
    )
    parser.add_argument("--pull-steps", type=int, default=4, help="progress lines per layer")
    parser.add_argument(
        "--pull-step-s", type=float, default=0.0, help="seconds between progress lines"
    )
    parser.add_argument(
        "--max-queue", type=int, default=None, help="busy (503) beyond this many generations"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    arguments = parse_arguments(argv)
    options = {
        "model": arguments.model,
        "embed_model": arguments.embed_model,
        "pullable": arguments.pullable,
        "pull_steps": arguments.pull_steps,
        "pull_step_s": arguments.pull_step_s,
        "max_queue": arguments.max_queue,
    }
    if arguments.echo:
        standin = echo_standin(delay_s=arguments.delay_s, **options)
    else:
        standin = local_standin(**options)
    uvicorn = require_uvicorn()
    family = socket.AF_INET6 if ":" in arguments.host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((arguments.host, arguments.port))
    listener.listen(128)
    port = listener.getsockname()[1]
    host = f"[{arguments.host}]" if family == socket.AF_INET6 else arguments.host
    # Connections wait in the backlog until uvicorn accepts them.
    sys.stdout.write(f"{READY_PREFIX}http://{host}:{port}\n")
    sys.stdout.flush()
    uvicorn.Server(uvicorn_config(standin.app)).run(sockets=[listener])


if __name__ == "__main__":
    main()
