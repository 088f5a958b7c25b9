"""The training loop: custom ``tf.GradientTape`` steps with Adam, resumable checkpoints, model
selection on held-back training people, calibration on fold 8, and a finished model directory.

Each step sees a P x K identity batch (see :class:`ml.data.IdentityBatchSampler`), augmented on a
background thread while the previous step runs. The loss is BCE on anchor/positive and
anchor/negative pairs through the Siamese head, plus CosFace over the training identities.
Negatives get harder as training goes on: each anchor's negative is the most similar of
``candidates`` random other-identity rows, with ``candidates`` rising from 1 (random) to
``max_negative_candidates``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ml.augment import augment_batch, center_crop
from ml.data import TrainingSet, build_training_set, pairs_from_protocol
from ml.lfw import read_protocol
from ml.metrics import best_threshold, report_at
from ml.preprocess import build_cache, load_cache

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (recorded in the manifest)."""

    seed: int = 1337
    steps: int = 3000
    identities_per_batch: int = 48
    singletons_per_batch: int = 16
    photos_per_identity: int = 2
    learning_rate: float = 2e-3
    warmup_steps: int = 150
    weight_decay: float = 5e-4
    dropout: float = 0.3
    widths: tuple[int, ...] = (32, 48, 96, 160)
    embedding_dim: int = 128
    cosface_weight: float = 1.0
    cosface_scale: float = 30.0
    cosface_margin: float = 0.3
    max_negative_candidates: int = 32
    negative_ramp_fraction: float = 0.6
    val_people: int = 80
    val_pairs_per_class: int = 500
    eval_every: int = 250
    checkpoint_every: int = 100
    cache_margin: int = 8
    flip_average: bool = True
    threads: int = 0  # TensorFlow intra-op threads; 0 = TensorFlow's default
    extra: dict[str, Any] = field(default_factory=dict)

    def negative_candidates(self, step: int) -> int:
        """Curriculum: 1 candidate (a random negative) at the start, the maximum after the ramp."""
        ramp = max(1, int(self.steps * self.negative_ramp_fraction))
        return 1 + int(round((self.max_negative_candidates - 1) * min(1.0, step / ramp)))


class _Trainer:
    def __init__(self, config: TrainConfig, training: TrainingSet, crops: np.ndarray):
        import keras
        import tensorflow as tf

        from ml.model import HEAD_NAME, build_siamese, build_tower

        keras.utils.set_random_seed(config.seed)
        self.config, self.training, self.crops = config, training, crops
        self.tower = build_tower(
            widths=config.widths, embedding_dim=config.embedding_dim, dropout=config.dropout, weight_decay=config.weight_decay
        )
        self.siamese = build_siamese(self.tower)
        self.head = self.siamese.get_layer(HEAD_NAME)
        # Start the head where a shorter L1 distance already means "more likely the same person".
        self.head.kernel.assign(tf.fill(self.head.kernel.shape, -0.5))
        self.head.bias.assign([5.0])
        self.class_weights = tf.Variable(
            tf.random.stateless_normal((training.num_classes, config.embedding_dim), seed=[config.seed, 3]) * 0.05,
            name="class_weights",
        )
        schedule = keras.optimizers.schedules.CosineDecay(
            0.0, decay_steps=max(1, config.steps - config.warmup_steps), alpha=0.02,
            warmup_target=config.learning_rate, warmup_steps=config.warmup_steps,
        )
        self.optimizer = keras.optimizers.Adam(schedule)
        self.step = tf.Variable(0, dtype=tf.int64, name="step")
        self.variables = self.tower.trainable_variables + self.head.trainable_variables + [self.class_weights]
        self.train_step = self._make_train_step()

    def _make_train_step(self):
        import tensorflow as tf

        from ml.losses import cosface, head_logits, pair_bce, select_negatives

        config, tower, head = self.config, self.tower, self.head
        k = config.photos_per_identity

        @tf.function(reduce_retracing=True)
        def train_step(images, labels, candidates, seed):
            with tf.GradientTape() as tape:
                embeddings = tower(images, training=True)
                anchors, positives = embeddings[0::k], embeddings[1::k]
                anchor_labels = labels[0::k]
                negative_rows = select_negatives(anchors, anchor_labels, embeddings, labels, candidates, seed)
                negatives = tf.gather(embeddings, negative_rows)
                pos_logits = head_logits(anchors, positives, head.kernel, head.bias)
                neg_logits = head_logits(anchors, negatives, head.kernel, head.bias)
                bce = pair_bce(tf.concat([pos_logits, neg_logits], 0),
                               tf.concat([tf.ones_like(pos_logits), tf.zeros_like(neg_logits)], 0))
                metric = cosface(embeddings, labels, self.class_weights, scale=config.cosface_scale, margin=config.cosface_margin)
                regularisation = tf.add_n(tower.losses) if tower.losses else 0.0
                loss = bce + config.cosface_weight * metric + regularisation
            grads = tape.gradient(loss, self.variables)
            self.optimizer.apply_gradients(zip(grads, self.variables))
            pair_acc = (tf.reduce_mean(tf.cast(pos_logits > 0, tf.float32)) + tf.reduce_mean(tf.cast(neg_logits < 0, tf.float32))) / 2
            return {"loss": loss, "bce": bce, "cosface": metric, "pair_acc": pair_acc}

        return train_step

    def head_weights(self) -> tuple[np.ndarray, float]:
        kernel, bias = self.head.get_weights()
        return kernel[:, 0], float(bias[0])

    def pair_scores(self, pairs: np.ndarray) -> np.ndarray:
        from ml.inference import embed_in_batches, head_scores, make_embed_fn

        rows = np.unique(pairs)
        faces = center_crop(self.crops[rows], self.config.cache_margin)
        embeddings = embed_in_batches(make_embed_fn(self.tower, flip_average=self.config.flip_average), faces)
        where = {row: i for i, row in enumerate(rows.tolist())}
        first = embeddings[[where[r] for r in pairs[:, 0].tolist()]]
        second = embeddings[[where[r] for r in pairs[:, 1].tolist()]]
        kernel, bias = self.head_weights()
        return head_scores(first, second, kernel, bias)


def train(
    config: TrainConfig,
    *,
    lfw_dir: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    work_dir: str | os.PathLike[str],
    version: str,
) -> Path:
    """Train (resuming from ``work_dir`` checkpoints if any), then write a complete model directory."""
    import tensorflow as tf
    from tqdm import tqdm

    if config.threads:
        tf.config.threading.set_intra_op_parallelism_threads(config.threads)
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    cache_path = work / f"lfw_cache_m{config.cache_margin}.npz"
    if not cache_path.exists():
        log.info("building the crop cache at %s (detects every LFW image once)", cache_path)
        build_cache(lfw_dir, cache_path, margin=config.cache_margin)
    cache = load_cache(cache_path)
    protocol = read_protocol(lfw_dir)
    training = build_training_set(
        cache["paths"], protocol, val_people=config.val_people, val_pairs_per_class=config.val_pairs_per_class, seed=config.seed
    )
    log.info("training on %d images of %d people; validating on %d pairs of %d held-back training people",
             len(training.indices), training.num_classes, len(training.val_same), len(training.val_people))

    from ml.data import IdentityBatchSampler

    sampler = IdentityBatchSampler(
        training.labels, identities=config.identities_per_batch, k=config.photos_per_identity,
        singletons=config.singletons_per_batch, seed=config.seed,
    )
    trainer = _Trainer(config, training, cache["crops"])
    checkpoint = tf.train.Checkpoint(tower=trainer.tower, head=trainer.head, class_weights=trainer.class_weights,
                                     optimizer=trainer.optimizer, step=trainer.step)
    manager = tf.train.CheckpointManager(checkpoint, str(work / "checkpoints"), max_to_keep=2)
    best_path, best_meta = work / "best.weights.h5", work / "best.json"
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint)
        log.info("resumed from %s at step %d", manager.latest_checkpoint, int(trainer.step.numpy()))
    best = json.loads(best_meta.read_text()) if best_meta.exists() and manager.latest_checkpoint else {"val_auc": -1.0}

    def make_batch(step: int) -> tuple[np.ndarray, np.ndarray]:
        positions = sampler.batch(step)
        rng = np.random.default_rng([config.seed, 4, step])
        images = augment_batch(trainer.crops[training.indices[positions]], config.cache_margin, rng)
        return images, training.labels[positions].astype(np.int32)

    start = int(trainer.step.numpy())
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(make_batch, start)
        progress = tqdm(range(start, config.steps), initial=start, total=config.steps, desc="train", unit="step", mininterval=30)
        for step in progress:
            images, labels = pending.result()
            if step + 1 < config.steps:
                pending = pool.submit(make_batch, step + 1)
            stats = trainer.train_step(
                tf.constant(images), tf.constant(labels), tf.constant(config.negative_candidates(step), tf.int32),
                tf.constant([config.seed, step], tf.int32),
            )
            trainer.step.assign(step + 1)
            if (step + 1) % 20 == 0:
                values = {key: float(value) for key, value in stats.items()}
                progress.set_postfix({key: f"{value:.3f}" for key, value in values.items()})
                log.info("step %d %s", step + 1, " ".join(f"{k}={v:.4f}" for k, v in values.items()))
            if (step + 1) % config.eval_every == 0 or step + 1 == config.steps:
                val_scores = trainer.pair_scores(training.val_pairs)
                # Accuracy at the validation set's own best threshold: a diagnostic, never shipped.
                report = report_at(training.val_same, val_scores, best_threshold(training.val_same, val_scores))
                log.info("step %d validation auc=%.4f acc=%.4f eer=%.4f tar@far1%%=%.4f",
                         step + 1, report.roc_auc, report.accuracy, report.eer, report.tar_at_far_1e_2)
                if report.roc_auc > best["val_auc"]:
                    trainer.siamese.save_weights(best_path)
                    best = {"val_auc": report.roc_auc, "step": step + 1, "validation": report.as_dict()}
                    best_meta.write_text(json.dumps(best, indent=2))
            if (step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps:
                manager.save(checkpoint_number=step + 1)
    elapsed = time.monotonic() - started
    log.info("training finished; best validation AUC %.4f at step %s", best["val_auc"], best.get("step"))

    if best_path.exists():
        trainer.siamese.load_weights(best_path)
    return export_model(trainer, cache=cache, protocol=protocol, training=training, best=best, elapsed=elapsed,
                        output_dir=output_dir, version=version)


def export_model(trainer: "_Trainer", *, cache: dict[str, np.ndarray], protocol: Any, training: TrainingSet,
                 best: dict[str, Any], elapsed: float, output_dir: str | os.PathLike[str], version: str) -> Path:
    """Calibrate the threshold on fold 8 and write ``model.keras`` + ``manifest.json`` to ``output_dir``."""
    config = trainer.config
    cal_pairs, cal_same = pairs_from_protocol(protocol.calibrate_pairs, cache["paths"])
    cal_scores = trainer.pair_scores(cal_pairs)
    threshold = best_threshold(cal_same, cal_scores)
    calibration = report_at(cal_same, cal_scores, threshold)
    log.info("calibrated threshold %.4f on fold 8 (accuracy there %.4f)", threshold, calibration.accuracy)

    from ml.model import count_multiply_adds

    manifest = {
        "version": version,
        "threshold": threshold,
        "threshold_source": "ROC on LFW View 2 fold 8 (calibrate), maximising TPR - FPR",
        "architecture": {
            "kind": "siamese: shared CNN tower -> L1Distance -> Dense(1, sigmoid)",
            "input": "100x100x3 uint8 RGB, 5-point aligned (MTCNN landmarks, ArcFace template)",
            "embedding_dim": config.embedding_dim,
            "tower_widths": list(config.widths),
            "tower_parameters": int(trainer.tower.count_params()),
            "tower_multiply_adds": count_multiply_adds(trainer.tower),
        },
        "inference": {"flip_average": config.flip_average},
        "training": {
            "config": {**asdict(config), "widths": list(config.widths)},
            "loss": "BCE on anchor/positive + anchor/negative pairs (negatives harden over training) + CosFace",
            "optimizer": "Adam, linear warm-up then cosine decay",
            "best_step": best.get("step"),
            "seconds_this_run": round(elapsed, 1),
            "train_images": int(len(training.indices)),
            "train_people": int(training.num_classes),
            "validation_people": int(len(training.val_people)),
        },
        "data": {
            "dataset": "LFW deep-funneled",
            "fingerprint_sha256": str(cache["fingerprint"]),
            "split": "train = people outside View 2 folds 8-10 (minus validation people); calibrate = fold 8; test = folds 9+10",
            "cache_fallback_crops": int((~cache["detected"]).sum()),
        },
        "validation": best.get("validation"),
        "calibration": calibration.as_dict(),
    }
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    from ml.inference import MANIFEST_FILE, MODEL_FILE

    trainer.siamese.save(out / MODEL_FILE)
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    log.info("wrote model directory %s", out)
    return out
