"""The model card at `/`: the data plane's description, drift and readiness as one HTML page.

The view only renders (Jinja2, `templates/card.html`); every number comes from
`DataPlane.model_card`, the same as `/model` and `/drift` answer. What only changes with the
model (its description, quality and the try-it form) is rendered once per loaded model and kept;
each request renders only the live part (counts, drift, readiness), so the page stays cheap and
never holds up `/classify` for long.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, render_template
from markupsafe import Markup

from service.dataplane import DataPlane
from service.openapi import documented

SECTIONS = "card_sections.html"
# The most classes whose cost and confusion matrices the card draws, cell by cell (with its
# figure pointer each): 400 cells. Past it, the card lists the costs other than 1 and points to
# `/model`; 1,024 classes made 2 million cells, and 30 s of a worker.
MATRIX_CLASSES = 20


def create_card(dataplane: DataPlane) -> Blueprint:
    """`GET /`: the model card."""
    card = Blueprint("card", __name__)
    card.record_once(
        lambda state: state.app.jinja_env.globals.update(matrix_classes=MATRIX_CLASSES)
    )
    # (model version, when it was loaded) -> the model's own sections, one model at a time.
    cache: dict[tuple[str, str], dict[str, Markup]] = {}

    def model_sections(description: dict[str, Any]) -> dict[str, Markup]:
        key = (description["model_version"], description["loaded_at"])
        sections = cache.get(key)
        if sections is None:
            macros = current_app.jinja_env.get_template(SECTIONS).module
            cache.clear()
            sections = cache[key] = {
                name: getattr(macros, name)(description) for name in ("model", "quality", "try_it")
            }
        return sections

    @card.get("/")
    @documented(
        summary="The model card: the live model, how good it is, live drift, a try-it form",
        description="An HTML page for people, with the numbers of `/model` and `/drift` and"
        " readiness. Every asset is served by the service itself; it works without JavaScript"
        " except for the try-it form.",
        responses={200: ("html", "The page.")},
    )
    def model_card() -> Response:
        state = dataplane.model_card()
        page = render_template(
            "card.html",
            card=state,
            model=state.description,
            sections=model_sections(state.description),
        )
        return Response(page, content_type="text/html; charset=utf-8")

    return card
