"""`python -m api add-user NAME`: add (or replace) a chat-page sign-in in the users file."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from api.login import add_user
from rag.cli import fail
from rag.config import get_settings
from rag.errors import RagError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m api", description="Chat-page sign-ins.")
    commands = parser.add_subparsers(dest="command", required=True)
    adding = commands.add_parser(
        "add-user",
        help="add or replace a user; the password is asked for (or read from standard input when it is not a terminal)",
    )
    adding.add_argument("name")
    adding.add_argument("--file", type=Path, help="users file (default: RAG_API_USERS_FILE)")
    args = parser.parse_args(argv)
    try:
        path = args.file or get_settings().api.users_file
        if path is None:
            return fail("no users file: pass --file PATH or set RAG_API_USERS_FILE")
        password = getpass.getpass(f"password for {args.name}: ") if sys.stdin.isatty() else sys.stdin.readline()
        add_user(path, args.name, password.rstrip("\n"))
    except RagError as exc:
        return fail(exc.message)
    sys.stderr.write(f"{args.name} can sign in (users file {path}); restart the app to apply\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
