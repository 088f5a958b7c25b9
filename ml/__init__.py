"""Face verification: decode, detect and align, embed, score with a Siamese network.

``import ml`` is cheap: TensorFlow loads only when a model or the detector is first used
(``load_model``, ``extract_face``). Array conventions are in :mod:`ml.types`.

Public API::

    image = ml.decode_image(data)          # RGB uint8, limits checked before decoding
    face = ml.extract_face(image)          # 100x100 aligned crop; NoFaceFound / FaceTooSmall / MultipleFacesFound
    model = ml.load_model()                # shipped model, cached per process
    emb = model.embed(faces[None])         # (N, 128) float32, L2-normalised
    scores = model.score(emb[0], refs)     # P(same person); same when >= model.threshold
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ml.align import detect_faces, extract_face
from ml.errors import FaceError, FaceTooSmall, ImageError, ImageTooLarge, MultipleFacesFound, NoFaceFound, UnreadableImage
from ml.image import decode_image, read_image
from ml.types import FACE_SIZE

if TYPE_CHECKING:
    from ml.evaluate import evaluate
    from ml.inference import SHIPPED_MODEL_DIR, FaceModel, ModelError, load_model

# Names whose modules import TensorFlow: resolved on first attribute access (PEP 562).
_LAZY = {
    "FaceModel": "ml.inference",
    "ModelError": "ml.inference",
    "load_model": "ml.inference",
    "SHIPPED_MODEL_DIR": "ml.inference",
    "evaluate": "ml.evaluate",
}

__all__ = [
    "FACE_SIZE",
    "FaceError",
    "FaceModel",
    "FaceTooSmall",
    "ImageError",
    "ImageTooLarge",
    "ModelError",
    "MultipleFacesFound",
    "NoFaceFound",
    "SHIPPED_MODEL_DIR",
    "UnreadableImage",
    "decode_image",
    "detect_faces",
    "evaluate",
    "extract_face",
    "load_model",
    "read_image",
]


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'ml' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
