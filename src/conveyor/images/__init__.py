"""Local base images built offline from Debian packages (`conveyor images build NAME`).

recipe.py   what an image is made of (suite, packages, files, steps, cleanup, config) and the
            content hash that tags it: localhost/conveyor/NAME:<hash> (and :latest)
builder.py  mmdebstrap builds the root, `podman import` makes it an image; cached by tag
node.py     Node of the example's major from the npm registry, for the `build` image
inventory   `images_status` / `ensure_images`: what doctor reports and `conveyor up` builds
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from conveyor.images.recipe import RECIPES, Recipe


@dataclass(frozen=True)
class ImageStatus:
    name: str
    tag: str
    present: bool
    description: str

    @property
    def build_command(self) -> str:
        return f"conveyor images build {self.name}"


def images_status(
    state_dir: Path, env: Mapping[str, str], recipes: Mapping[str, Recipe] = RECIPES
) -> list[ImageStatus]:
    """Each recipe's image: present (its current tag exists) or missing."""
    from conveyor.images.builder import ImageBuilder, default_apt_cache

    builder = ImageBuilder(env, state_dir / "images", default_apt_cache(state_dir))
    out = []
    for r in recipes.values():
        tag = r.tag()
        out.append(ImageStatus(r.name, tag, builder.exists(tag), r.description))
    return out


def ensure_images(
    names: Sequence[str],
    state_dir: Path,
    env: Mapping[str, str],
    say: Callable[[str], None] = lambda _l: None,
) -> list[str]:
    """Build the named images that are missing (`conveyor up`); return what was built."""
    from conveyor.images.builder import ImageBuilder, default_apt_cache
    from conveyor.images.recipe import lookup

    builder = ImageBuilder(env, state_dir / "images", default_apt_cache(state_dir), say=say)
    built = []
    for name in names:
        result = builder.build(lookup(name))
        if result.built:
            built.append(f"image {result.tag} ({result.seconds:.0f} s)")
    return built
