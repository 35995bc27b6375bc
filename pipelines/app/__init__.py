"""The interactive app: click-to-segment in the browser, a small labelling tool.

``composeseg serve [IMAGE_OR_DIR]`` (``pip install "composeseg[app]"``). The layers, each
usable alone:

- :mod:`.editor`: the object being drawn, SAM's interactive loop with undo / redo;
- :mod:`.document`: one image's objects; :mod:`.store`: the images and the saved records;
- :mod:`.workspace`: what the app does, without HTTP (:class:`Workspace`);
- :mod:`.server`: the FastAPI app (:func:`create_app`) and the static page in ``static/``.

FastAPI and uvicorn are imported only when an app is built.
"""

from __future__ import annotations

from composeseg._lazy import lazy_attributes

_LAZY: dict[str, str] = {
    "Workspace": "composeseg.pipelines.app.workspace",
    "create_app": "composeseg.pipelines.app.server",
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
