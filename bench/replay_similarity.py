"""How similar are copies of one photo, versus different photos? Chooses REPLAY_SIMILARITY_MAX.

Embeds the committed fixture faces with the configured (shipped) model, and copies of each (JPEG quality
95/75/50, scaled 0.9/0.75, shifted 4 px, +-3 pixel noise); prints the cosine similarity of each copy to
its original and of every pair of photos. Run: ``DEBUG=1 python bench/replay_similarity.py``.
Result (siamese-lfw-1.0.0): copies 0.924-1.000 (42 of 55 above 0.995); different photos of the same
person at most 0.828; different people at most 0.128 (verification/services/replays.py).
"""
import io, itertools, os, sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "accesscontrol.settings")
os.environ.setdefault("DEBUG", "1")
import django; django.setup()
import numpy as np
from PIL import Image
from verification import inference
F = f"{REPO}/tests/fixtures/faces/"
def emb(data):
    return inference.embed_face(data).embedding.astype(np.float64)
def variants(path):
    im = Image.open(path).convert("RGB"); out = {}
    for q in (95, 75, 50):
        b = io.BytesIO(); im.save(b, "JPEG", quality=q); out[f"q{q}"] = b.getvalue()
    for s in (0.9, 0.75):
        b = io.BytesIO(); im.resize((int(im.width*s), int(im.height*s))).save(b, "JPEG", quality=90); out[f"scale{s}"] = b.getvalue()
    b = io.BytesIO(); im.crop((4, 4, im.width, im.height)).save(b, "JPEG", quality=90); out["shift4"] = b.getvalue()
    arr = np.asarray(im).astype(np.int16); rng = np.random.default_rng(0)
    b = io.BytesIO(); Image.fromarray(np.clip(arr + rng.integers(-3, 4, arr.shape), 0, 255).astype(np.uint8)).save(b, "JPEG", quality=90); out["noise3"] = b.getvalue()
    return out
names = [n for n in sorted(os.listdir(F)) if n.startswith("person_")]
E = {n: emb(open(F + n, "rb").read()) for n in names}
print("model", inference.model_info())
replays = []
for n in names:
    for k, data in variants(F + n).items():
        try:
            emb(data)
        except inference.FaceRejected as exc:
            print(f"replay {n} {k}: rejected {exc.reason}"); continue
        c = float(E[n] @ emb(data) / (np.linalg.norm(E[n]) * 1.0 / 1.0) / np.linalg.norm(emb(data)))
        replays.append(c); print(f"replay {n} {k}: {c:.5f}")
same, diff = [], []
for a, b in itertools.combinations(names, 2):
    c = float(E[a] @ E[b] / np.linalg.norm(E[a]) / np.linalg.norm(E[b]))
    (same if a.split("_")[1] == b.split("_")[1] else diff).append(c)
    print(f"pair {a} {b}: {c:.5f}")
print(f"min replay {min(replays):.5f}  max same-person different photo {max(same):.5f}  max different people {max(diff):.5f}")
