"""Array conventions shared by every module of ``ml`` (written once, here).

- Images: ``np.ndarray`` RGB, ``uint8``, shape ``(H, W, 3)``. Decoders produce this; BGR only ever
  appears inside :func:`ml.image._bgr_to_rgb`, the one place that converts OpenCV's order.
- Face crops: ``uint8`` RGB ``(FACE_SIZE, FACE_SIZE, 3)``, aligned on a fixed 5-point template;
  batches are ``(N, FACE_SIZE, FACE_SIZE, 3)``.
- Embeddings: ``float32`` ``(N, D)``, each row L2-normalised.
- Scores: ``float32`` in ``[0, 1]``, the Siamese head's P(same person).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FACE_SIZE = 100
"""Side of the aligned face crop the network takes."""

ImageRGB = npt.NDArray[np.uint8]
FaceBatch = npt.NDArray[np.uint8]
Embeddings = npt.NDArray[np.float32]
