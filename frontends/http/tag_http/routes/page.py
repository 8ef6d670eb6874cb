"""The web page at `/` and its static files, under a strict Content-Security-Policy."""
from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

PAGE_CSP = ("default-src 'self'; media-src 'self' blob:; img-src 'self' data:; style-src 'self'; "
            "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
STATIC = resources.files("tag_http") / "static"

router = APIRouter(include_in_schema=False)


@router.get("/")
def page() -> HTMLResponse:
    return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"),
                        headers={"Content-Security-Policy": PAGE_CSP, "X-Frame-Options": "DENY"})


def mount_page(app: FastAPI) -> None:
    """The page's route and its /static files."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
