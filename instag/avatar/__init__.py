"""Avatar bundles (DESIGN §4): save/load with a checked format version, and driving them frame by frame."""

from instag.avatar.bundle import AVATAR_FORMAT, AVATAR_VERSION, Avatar, load_avatar, save_avatar

__all__ = ["AVATAR_FORMAT", "AVATAR_VERSION", "Avatar", "load_avatar", "save_avatar"]
