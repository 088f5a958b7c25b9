"""The training loop: custom ``tf.GradientTape`` steps with Adam, resumable checkpoints, model
selection on held-back training people, calibration on fold 8, and a finished model directory.

Each step sees a P x K identity batch (see :class:`ml.data.IdentityBatchSampler`), augmented on a
background thread while the previous step runs. The loss is BCE on anchor/positive and
anchor/negative pairs through the Siamese head, plus CosFace over the training identities.
Negatives get harder as training goes on: each anchor's negative is the most similar of
``candidates`` random other-identity rows, with ``candidates`` rising from 1 (random) to
``max_negative_candidates``.

Distillation (``distill_weight`` > 0) adds two terms on the tower's embedding, with targets from
dlib's face descriptor computed once per training image (:mod:`ml.teacher`): a cosine term pulling
each embedding of an *augmented* face towards the teacher's descriptor of the clean photo
(mean-centred, normalised), and a relational term matching the batch's pairwise similarity matrix
to the teacher's, which carries the teacher's impostor structure (the strict end of the ROC) rather
than only its per-image directions. The deployed network is unchanged: the Siamese head is still
trained with BCE, and the teacher never ships.
"""

from __future__ import annotations

import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from ml.augment import augment_batch, center_crop
from ml.data import TrainingSet, build_training_set
from ml.lfw import read_protocol
from ml.metrics import best_threshold, report_at
from ml.morphs import Morphs, blend, draw_morphs
from ml.preprocess import build_cache, load_cache
from ml.types import FACE_SIZE

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (recorded in the manifest)."""

    seed: int = 1337
    steps: int = 5000
    identities_per_batch: int = 48
    singletons_per_batch: int = 16
    photos_per_identity: int = 2
    learning_rate: float = 2e-3
    warmup_steps: int = 150
    weight_decay: float = 5e-4
    dropout: float = 0.3
    widths: tuple[int, ...] = (32, 48, 96, 160)
    # Depth: identity-initialised residual 3x3 convs at the end of each of the three deeper stages
    # (ml.model._residual), so a trained tower can be deepened by a continuation run.
    residual_blocks: int = 0
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
    distill_weight: float = 4.0
    relational_weight: float = 8.0
    # Consistent teaching (ml/views.py): this many degraded views per training face, each described by
    # the teacher once; ``view_fraction`` of each batch is shown as one of them, with that view's target.
    teacher_views: int = 0
    view_fraction: float = 0.5
    # Teacher morphs (ml/morphs.py): this many blends of two training people's faces, described by the
    # teacher once; each batch adds ``morphs_per_batch`` of them to the distillation losses only.
    teacher_morphs: int = 0
    morphs_per_batch: int = 32
    select_far: float = 1e-3  # model selection: TAR at this FAR over all validation image pairs
    # Warm start: a model directory (relative to the repository root) whose tower and head weights
    # start this run; "" trains from scratch. Continuing a model costs a fraction of a new run.
    init_from: str = ""
    # Seed of the batch order and augmentation; 0 = ``seed``. A continued run sets its own so it does
    # not replay the first run's batches (``seed`` also picks the validation people: keep it).
    batch_seed: int = 0
    threads: int = 0  # TensorFlow intra-op threads; 0 = TensorFlow's default
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_manifest(cls, path: str | os.PathLike[str]) -> "TrainConfig":
        """The config a model directory's ``manifest.json`` was trained with (fields it predates keep
        the values that reproduce it: no distillation)."""
        recorded = dict(json.loads(Path(path).read_text())["training"]["config"])
        recorded.setdefault("distill_weight", 0.0)
        recorded.setdefault("relational_weight", 0.0)
        recorded.setdefault("init_from", "")
        recorded.setdefault("batch_seed", 0)
        recorded.setdefault("teacher_views", 0)
        recorded.setdefault("teacher_morphs", 0)
        recorded.setdefault("residual_blocks", 0)
        recorded["widths"] = tuple(recorded["widths"])
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(recorded) - known)
        if unknown:
            raise ValueError(f"{path}: unknown training config fields {unknown}")
        return cls(**recorded)

    def negative_candidates(self, step: int) -> int:
        """Curriculum: 1 candidate (a random negative) at the start, the maximum after the ramp."""
        ramp = max(1, int(self.steps * self.negative_ramp_fraction))
        return 1 + int(round((self.max_negative_candidates - 1) * min(1.0, step / ramp)))


class _Trainer:
    def __init__(self, config: TrainConfig, training: TrainingSet, crops: np.ndarray, teacher: np.ndarray | None = None):
        import keras
        import tensorflow as tf

        from ml.model import HEAD_NAME, build_siamese, build_tower

        keras.utils.set_random_seed(config.seed)
        self.config, self.training, self.crops = config, training, crops
        # (cache rows, 128) centred teacher targets; zero rows for images never trained on.
        self.teacher = teacher if teacher is not None else np.zeros((len(crops), config.embedding_dim), np.float32)
        self.tower = build_tower(
            widths=config.widths, embedding_dim=config.embedding_dim, dropout=config.dropout,
            weight_decay=config.weight_decay, residual_blocks=config.residual_blocks,
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
        self._embed_fn = None

    def _make_train_step(self):
        import tensorflow as tf

        from ml.losses import cosface, head_logits, pair_bce, select_negatives

        config, tower, head = self.config, self.tower, self.head
        k = config.photos_per_identity

        @tf.function(reduce_retracing=True)
        def train_step(images, labels, targets, morph_images, morph_targets, candidates, seed):
            with tf.GradientTape() as tape:
                # Morphs (no identity) share the forward pass and join only the distillation losses.
                taught = tower(tf.concat([images, morph_images], 0), training=True)
                embeddings = taught[: tf.shape(images)[0]]
                all_targets = tf.concat([targets, morph_targets], 0)
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
                distill = 1.0 - tf.reduce_mean(tf.reduce_sum(taught * all_targets, axis=1))
                relational = tf.reduce_mean(tf.square(
                    tf.matmul(taught, taught, transpose_b=True) - tf.matmul(all_targets, all_targets, transpose_b=True)))
                loss = (bce + config.cosface_weight * metric + regularisation
                        + config.distill_weight * distill + config.relational_weight * relational)
            grads = tape.gradient(loss, self.variables)
            self.optimizer.apply_gradients(zip(grads, self.variables))
            pair_acc = (tf.reduce_mean(tf.cast(pos_logits > 0, tf.float32)) + tf.reduce_mean(tf.cast(neg_logits < 0, tf.float32))) / 2
            return {"loss": loss, "bce": bce, "cosface": metric, "distill": distill, "relational": relational,
                    "pair_acc": pair_acc}

        return train_step

    def warm_start(self, model_dir: str | os.PathLike[str]) -> None:
        """Start from another model's tower and head; CosFace's class centres are imprinted as each
        training person's mean embedding, so the first steps refine instead of undoing the tower.
        A source with fewer channels per stage, or without this run's residual blocks, is widened or
        deepened (:mod:`ml.widen`) into this run's tower."""
        import keras

        from ml.inference import MODEL_FILE
        from ml.model import HEAD_NAME, TOWER_NAME
        from ml.widen import widen_into

        source = keras.models.load_model(Path(model_dir) / MODEL_FILE, compile=False)
        source_tower = source.get_layer(TOWER_NAME)
        if [w.shape for w in source_tower.get_weights()] == [w.shape for w in self.tower.get_weights()]:
            self.siamese.set_weights(source.get_weights())
        else:  # a wider or deeper tower than the source's: it starts computing what the source learned
            widen_into(source_tower, self.tower, seed=self.config.seed)
            self.head.set_weights(source.get_layer(HEAD_NAME).get_weights())
        embeddings = self.embed_rows(self.training.indices)
        centres = np.zeros((self.training.num_classes, embeddings.shape[1]), np.float32)
        np.add.at(centres, self.training.labels, embeddings)
        norms = np.linalg.norm(centres, axis=1, keepdims=True)
        self.class_weights.assign(centres / np.maximum(norms, 1e-12) * 0.05)

    def head_weights(self) -> tuple[np.ndarray, float]:
        kernel, bias = self.head.get_weights()
        return kernel[:, 0], float(bias[0])

    def embed_rows(self, rows: np.ndarray) -> np.ndarray:
        from ml.inference import embed_in_batches, make_embed_fn

        if self._embed_fn is None:  # one traced function for every validation pass
            self._embed_fn = make_embed_fn(self.tower, flip_average=self.config.flip_average)
        faces = center_crop(self.crops[rows], self.config.cache_margin)
        return embed_in_batches(self._embed_fn, faces)

    def scorer(self):
        from ml.inference import head_scores

        kernel, bias = self.head_weights()
        return lambda first, second: head_scores(first, second, kernel, bias)

    def pair_scores(self, pairs: np.ndarray) -> np.ndarray:
        from ml.inference import head_scores

        rows = np.unique(pairs)
        embeddings = self.embed_rows(rows)
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

    from ml._extras import train_extra

    tqdm = train_extra("tqdm").tqdm

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
        singletons=config.singletons_per_batch, seed=config.batch_seed or config.seed,
    )
    teacher = views = morphs = None
    if config.distill_weight or config.relational_weight:
        teacher, views, mean = _teacher_targets(lfw_dir, work, cache, protocol, training, config)
        morphs = _morph_targets(lfw_dir, work, cache, protocol, training, config, mean)
    trainer = _Trainer(config, training, cache["crops"], teacher)
    checkpoint = tf.train.Checkpoint(tower=trainer.tower, head=trainer.head, class_weights=trainer.class_weights,
                                     optimizer=trainer.optimizer, step=trainer.step)
    manager = tf.train.CheckpointManager(checkpoint, str(work / "checkpoints"), max_to_keep=2)
    best_path, best_meta = work / "best.weights.h5", work / "best.json"
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint)
        log.info("resumed from %s at step %d", manager.latest_checkpoint, int(trainer.step.numpy()))
    elif config.init_from:
        trainer.warm_start(config.init_from)
        log.info("warm start from %s", config.init_from)
    best = json.loads(best_meta.read_text()) if best_meta.exists() and manager.latest_checkpoint else {"score": -1.0}
    val_rows, val_people = _validation_images(cache["paths"], training)

    def make_batch(step: int) -> tuple[np.ndarray, ...]:
        positions = sampler.batch(step)
        rng = np.random.default_rng([config.batch_seed or config.seed, 4, step])
        rows = training.indices[positions]
        images, targets = training_batch(trainer.crops, rows, trainer.teacher, views, config, rng)
        morph_images, morph_targets = morph_batch(trainer.crops, morphs, config, rng)
        return images, training.labels[positions].astype(np.int32), targets, morph_images, morph_targets

    start = int(trainer.step.numpy())
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(make_batch, start)
        progress = tqdm(range(start, config.steps), initial=start, total=config.steps, desc="train", unit="step", mininterval=30)
        for step in progress:
            images, labels, targets, morph_images, morph_targets = pending.result()
            if step + 1 < config.steps:
                pending = pool.submit(make_batch, step + 1)
            stats = trainer.train_step(
                tf.constant(images), tf.constant(labels), tf.constant(targets),
                tf.constant(morph_images), tf.constant(morph_targets),
                tf.constant(config.negative_candidates(step), tf.int32),
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
                strict = _strict_validation(trainer, val_rows, val_people, config.select_far)
                log.info("step %d validation auc=%.4f acc=%.4f eer=%.4f tar@far1%%=%.4f | all %d impostor pairs: "
                         "tar@far%g=%.4f auc=%.4f", step + 1, report.roc_auc, report.accuracy, report.eer,
                         report.tar_at_far_1e_2, strict["impostor_pairs"], config.select_far, strict["tar"], strict["auc"])
                if strict["tar"] > best["score"]:
                    trainer.siamese.save_weights(best_path)
                    best = {"score": strict["tar"], "selection": f"TAR at FAR {config.select_far:g}, all validation image pairs",
                            "val_auc": report.roc_auc, "step": step + 1, "validation": report.as_dict(), "validation_all_pairs": strict}
                    best_meta.write_text(json.dumps(best, indent=2))
            if (step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps:
                manager.save(checkpoint_number=step + 1)
    elapsed = time.monotonic() - started
    log.info("training finished; best validation score %.4f at step %s", best["score"], best.get("step"))

    if best_path.exists():
        trainer.siamese.load_weights(best_path)
    from ml.export import export_model

    return export_model(trainer, cache=cache, protocol=protocol, training=training, best=best, elapsed=elapsed,
                        output_dir=output_dir, version=version)


def training_batch(crops: np.ndarray, rows: np.ndarray, teacher: np.ndarray, views: np.ndarray | None, config: TrainConfig,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Augmented faces of cache ``rows`` and each face's distillation target.

    Without ``views`` every face is augmented at random and matches its clean photo's target. With
    ``views`` ((cache rows, teacher_views, dim)), about ``view_fraction`` of the faces are shown under one
    of their teacher views instead (random geometry, then the view's camera conditions) and match the
    teacher's descriptor of that view; the rest are drawn exactly as without views.
    """
    from ml.augment import jitter_geometry
    from ml.views import apply_view, draw_view, view_rng

    images = augment_batch(crops[rows], config.cache_margin, rng)
    targets = teacher[rows].copy()
    if views is None:
        return images, targets
    shown = np.flatnonzero(rng.random(len(rows)) < config.view_fraction)
    for i, index in zip(shown.tolist(), rng.integers(0, views.shape[1], size=len(shown)).tolist()):
        row = int(rows[i])
        view = draw_view(view_rng(config.seed, row, index + 1))
        images[i] = apply_view(jitter_geometry(crops[row], config.cache_margin, rng), view)
        targets[i] = views[row, index]
    return images, targets


def morph_batch(crops: np.ndarray, morphs: "MorphTargets | None", config: TrainConfig,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``config.morphs_per_batch`` random morphs, blended and augmented like any face, and their targets;
    empty arrays without morphs (the train step's shapes stay fixed either way)."""
    if morphs is None:
        return np.zeros((0, FACE_SIZE, FACE_SIZE, 3), np.uint8), np.zeros((0, config.embedding_dim), np.float32)
    chosen = rng.integers(0, len(morphs.targets), size=config.morphs_per_batch)
    blended = blend(crops[morphs.first[chosen]], crops[morphs.second[chosen]], morphs.alpha[chosen])
    return augment_batch(blended, config.cache_margin, rng), morphs.targets[chosen]


@dataclass(frozen=True)
class MorphTargets(Morphs):
    targets: np.ndarray  # (N, dim) centred on the clean training photos' mean, like every target


def _morph_targets(lfw_dir, work: Path, cache: dict[str, np.ndarray], protocol: Any, training: TrainingSet,
                   config: TrainConfig, mean: np.ndarray) -> MorphTargets | None:
    """The run's morphs and their teacher targets centred on ``mean`` (the clean targets'), built once;
    ``None`` when the run has none. Morphs are drawn among the training rows only, so validation people
    never appear in one."""
    if not config.teacher_morphs:
        return None
    from ml.teacher import build_teacher_morphs, centred_targets

    path = work / f"teacher_dlib_morphs{config.teacher_morphs}_seed{config.seed}.npz"
    drawn = draw_morphs(training.indices, training.labels, config.teacher_morphs, seed=config.seed)
    if not path.exists():
        log.info("computing teacher descriptors of %d morphs -> %s", config.teacher_morphs, path)
        build_teacher_morphs(lfw_dir, cache["paths"], protocol.held_out_people, drawn, path,
                             workers=max(1, os.cpu_count() or 1))
    with np.load(path) as data:
        first, second, alpha, targets = data["first"], data["second"], data["alpha"], data["targets"]
    if not (np.array_equal(first, drawn.first) and np.array_equal(second, drawn.second)):
        raise ValueError(f"{path} holds other morphs than this run draws (another training split?); delete it")
    centred, _ = centred_targets(targets, mean)
    log.info("training adds %d of %d teacher morphs to each batch", config.morphs_per_batch, len(first))
    return MorphTargets(first, second, alpha, centred)


def _teacher_targets(lfw_dir, work: Path, cache: dict[str, np.ndarray], protocol: Any, training: TrainingSet,
                     config: TrainConfig) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Centred teacher targets per cache row (zeros outside the training rows), built once; with
    ``config.teacher_views`` the centred targets of each row's views ((rows, views, dim); else None); and
    the clean photos' mean they are all centred on, so a view's (or a morph's) target sits where the
    teacher put it."""
    from ml.teacher import build_teacher_cache, build_teacher_views, centred_targets

    workers = max(1, os.cpu_count() or 1)
    path = work / "teacher_dlib.npz"
    if not path.exists():
        log.info("computing teacher targets (dlib) for the training people's images -> %s", path)
        build_teacher_cache(lfw_dir, cache["paths"], protocol.held_out_people, path, workers=workers)
    with np.load(path) as data:
        rows, targets = data["rows"], data["targets"]
    if targets.shape[1] != config.embedding_dim:
        raise ValueError(f"distillation needs embedding_dim={targets.shape[1]} (the teacher's), not {config.embedding_dim}")
    keep = np.isin(rows, training.indices)  # validation people's images stay out of training entirely
    centred, mean = centred_targets(targets[keep])
    out = np.zeros((len(cache["paths"]), centred.shape[1]), dtype=np.float32)
    out[rows[keep]] = centred
    if not config.teacher_views:
        return out, None, mean
    views_path = work / f"teacher_dlib_views{config.teacher_views}_seed{config.seed}.npz"
    if not views_path.exists():
        log.info("computing %d teacher views per training image -> %s", config.teacher_views, views_path)
        build_teacher_views(lfw_dir, cache["paths"], protocol.held_out_people, views_path, count=config.teacher_views,
                            seed=config.seed, workers=workers)
    with np.load(views_path) as data:
        view_rows, view_targets = data["rows"], data["targets"]
    keep = np.isin(view_rows, training.indices)
    centred_views, _ = centred_targets(view_targets[keep], mean)
    views = np.zeros((len(cache["paths"]),) + centred_views.shape[1:], dtype=np.float32)
    views[view_rows[keep]] = centred_views
    log.info("training shows %d teacher views per face (%.0f %% of each batch)", views.shape[1], 100 * config.view_fraction)
    return out, views, mean


def _validation_images(paths: np.ndarray, training: TrainingSet) -> tuple[np.ndarray, np.ndarray]:
    from ml.lfw import person_of

    rows = np.asarray([r for r, p in enumerate(paths.tolist()) if person_of(p) in training.val_people], dtype=np.int64)
    return rows, np.asarray([person_of(p) for p in paths[rows].tolist()])


def _strict_validation(trainer: "_Trainer", rows: np.ndarray, people: np.ndarray, far: float) -> dict[str, float]:
    """TAR at ``far`` and AUC over every pair of the validation people's images (tens of thousands
    of impostor pairs: enough to see the strict end a door needs, unlike 500 listed pairs)."""
    from ml.largescale import all_pairs, rate_at, threshold_at_far
    from ml.metrics import roc_auc

    pairs = all_pairs(trainer.embed_rows(rows), people, trainer.scorer())
    labels = np.r_[np.ones(len(pairs.genuine), bool), np.zeros(len(pairs.impostor), bool)]
    return {
        "tar": rate_at(pairs.genuine, threshold_at_far(pairs.impostor, far)),
        "auc": roc_auc(labels, np.r_[pairs.genuine, pairs.impostor]),
        "genuine_pairs": int(len(pairs.genuine)), "impostor_pairs": int(len(pairs.impostor)),
    }
