"""`/v1/health` (no key needed) and `/v1/backends`: what this server can do now."""
# No `from __future__ import annotations`: FastAPI evaluates the route annotations.
from fastapi import APIRouter, Request

from ..errors import error_schemas
from ..schemas import BackendList, Health
from ..services import Protected, Shared

router = APIRouter(prefix="/v1")


@router.get("/health", response_model=Health, tags=["server"])
def health(request: Request, state: Shared) -> Health:
    """Whether jobs can be served now, and a few counters; needs no API key. Always 200 while this server
    runs (a liveness probe must not restart it for a broker outage or a missing worker): read `status`."""
    served = sum(entry.available for entry in state.catalog.entries())
    problems = [problem for problem in (
        state.requester.client.outage(),
        None if served else "no live worker serves any offered backend",
    ) if problem]
    return Health(status="degraded" if problems else "ok", problems=problems, version=request.app.version,
                  transport=state.transport_name, backends_served=served, jobs=state.store.count(),
                  unfinished=state.store.unfinished(), auth_required=bool(state.api_key))


@router.get("/backends", response_model=BackendList, dependencies=Protected, tags=["backends"],
            responses=error_schemas(401))
def list_backends(state: Shared) -> BackendList:
    """The backends this server offers, with duration ranges, capabilities and request options."""
    return state.catalog.describe()
