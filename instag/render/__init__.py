"""Avatar rendering: motion fields → deformed Gaussians → rasterize → composite face over mouth over background."""

from instag.render.avatar import (
    AvatarRender,
    BranchRender,
    FrameCondition,
    camera_center,
    gaussian_normals,
    render_avatar,
)

__all__ = [
    "AvatarRender",
    "BranchRender",
    "FrameCondition",
    "camera_center",
    "gaussian_normals",
    "render_avatar",
]
