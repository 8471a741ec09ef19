"""Motion fields: audio nets, the Universal Motion Field, personalized fields, the aligner and the hook."""

from instag.motion.aligner import MotionAligner
from instag.motion.audio import AudioAttention, AudioEncoder, frame_audio_windows
from instag.motion.fields import FaceMotion, MotionBranch, PersonalizedField, UniversalMotionField
from instag.motion.hook import FaceMouthHook, hook_features
from instag.motion.model import AvatarMotion, MotionModel, build_personalized, param_groups

__all__ = [
    "AudioAttention",
    "AudioEncoder",
    "AvatarMotion",
    "FaceMotion",
    "FaceMouthHook",
    "MotionAligner",
    "MotionBranch",
    "MotionModel",
    "PersonalizedField",
    "UniversalMotionField",
    "build_personalized",
    "frame_audio_windows",
    "hook_features",
    "param_groups",
]
