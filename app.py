"""`python app.py` serves the chat page (`/`) and the HTTP API (`/v1/...`), both thin over one RagService.

The code lives in the api/ package; `create_app(service)` builds the app (tests hand in a service with fakes)
and `main()` runs it with the host and port from settings. Both stay importable from here.
"""

from __future__ import annotations

from rag.cli import limit_native_threads

limit_native_threads()  # before numpy is imported anywhere

from api.factory import create_app  # noqa: E402
from api.serve import main  # noqa: E402

__all__ = ["create_app", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
