"""Route choice (pure): the first route in file order whose `paths` and `models` both match."""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase

from proxy.core.errors import BadRequest, NotFound
from proxy.core.runtime import Route


def _model_matches(route: Route, model: str | None) -> bool:
    if route.models is None:
        return True
    return model is not None and any(fnmatchcase(model, pattern) for pattern in route.models)


def select_route(routes: Sequence[Route], path: str, model: str | None) -> Route:
    """The route for this request, or the client error that explains why there is none."""
    model_required = False
    path_known = False
    for route in routes:
        if path not in route.paths:
            continue
        path_known = True
        if _model_matches(route, model):
            return route
        model_required = model_required or (model is None and route.models is not None)
    if model_required:
        raise BadRequest('the request body has no "model"; this path routes by model')
    if path_known:
        raise NotFound("no route serves this model on this path")
    raise NotFound("no route serves this path")
