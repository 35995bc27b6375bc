"""Generated scene families that evaluations draw from, and their evaluation seeds.

Light at import: the generators load when a scene is drawn, so the CLI can offer the families
as choices without loading them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from composeseg.synthetic import Scene, SceneConfig

SCENE_FAMILIES: tuple[str, ...] = ("training", "randomized", "randomized-dense", "independent")
"""Generated scene families to evaluate on. ``"training"``: the training generator
(:func:`composeseg.synthetic.generate_scene`); ``"randomized"`` and ``"randomized-dense"``: its
domain-randomised generator in default and crowded layouts
(:func:`composeseg.synthetic.randomized.generate_randomized_scene`, ``DENSE_LAYOUT``). The demo SAM
trained on all three, so new seeds of them measure it in-distribution. ``"independent"``:
:mod:`composeseg.synthetic.independent`, never trained on (zero-shot)."""


def family_seeds(family: str, count: int, split: str = "test") -> list[int]:
    """The first ``count`` evaluation seeds of ``family``: the independent family's ``split``
    (``"validation"`` or ``"test"``), else seeds from ``EVALUATION_SEED_START`` (1e9), a range
    no training run draws from."""
    from composeseg.synthetic.independent import independent_seeds
    from composeseg.train.config import EVALUATION_SEED_START

    check_family(family)
    if family == "independent":
        return independent_seeds(split, count)  # type: ignore[arg-type]
    return list(range(EVALUATION_SEED_START, EVALUATION_SEED_START + int(count)))


def family_scene(family: str, seed: int, config: SceneConfig | None = None) -> Scene:
    """The generated scene of ``seed`` in ``family`` (:data:`SCENE_FAMILIES`); ``config``
    configures the ``"training"`` family only (default ``SceneConfig()``)."""
    from composeseg.synthetic import SceneConfig, generate_scene
    from composeseg.synthetic.independent import generate_independent_scene
    from composeseg.synthetic.randomized import DENSE_LAYOUT, generate_randomized_scene

    check_family(family)
    if family == "independent":
        return generate_independent_scene(int(seed))
    if family == "randomized":
        return generate_randomized_scene(int(seed))
    if family == "randomized-dense":
        return generate_randomized_scene(int(seed), DENSE_LAYOUT)
    return generate_scene(int(seed), config or SceneConfig())


def check_family(family: str) -> str:
    """``family`` itself, or ``ValueError`` naming :data:`SCENE_FAMILIES`."""
    if family not in SCENE_FAMILIES:
        raise ValueError(f"family must be one of {SCENE_FAMILIES}, got {family!r}")
    return family
