"""Reference generators: four simple class-conditional "generators" that show what good and bad look
like to the metrics on a given training set (``neurodit baseline``; the calibration panel of
``neurodit evaluate --calibrate``).

Each is fitted per class (e.g. sex F / M) on the training volumes (N, D, H, W) in mm²/s, inside a brain
mask (D, H, W); samples are clipped at 0 and set to 0 outside the mask.

- ``pca``: a Gaussian in the span of the class's training volumes (probabilistic PCA without the
  isotropic noise term; Tipping & Bishop 1999): ``x = mean + sum_k z_k sqrt(lambda_k) u_k``,
  ``z ~ N(0, I)``, with ``u_k, lambda_k`` the principal axes / variances of the centred class data
  (all ``n_c - 1`` components, or the first K). A strong, honest baseline: right mean, right
  covariance in the training span, new subjects.
- ``noise``: class mean + independent voxel noise N(0, per-voxel sd): right first and second moments
  per voxel, but white (no spatial correlation), which texture views see at once.
- ``copy``: the class's training volumes re-emitted (shuffled, cycled): a perfect memoriser. It fools
  any two-sample test against real data; only a memorization audit catches it.
- ``mean``: the class mean image N times: zero diversity.

Memory: the fitted model keeps a reference to the training array (no copy), the class means (and
sds), and for ``pca`` the (n_c, K) coefficient map. The principal axes are never formed: with
``Xc = X - mean`` (n_c, V) and the eigenpairs ``(lambda_k, v_k)`` of ``G = Xc Xc^T / (n_c - 1)``
(n_c x n_c, accumulated over voxel chunks), ``sqrt(lambda_k) u_k = Xc^T v_k / sqrt(n_c - 1)``, so a
sample is ``mean + w^T Xc`` with ``w = V_K z / sqrt(n_c - 1)``; since ``V_K`` is orthogonal to the
ones vector, ``w^T Xc = w^T X``. Samples are produced in batches over voxel chunks, so 200 volumes of
96x112x96 fit in a few hundred MB beyond the training array itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from neurodit.errors import NeuroditError

KINDS = ("pca", "noise", "copy", "mean")
PANEL_ORDER = ("noise", "mean", "copy", "pca")  # bad to good: the calibration panel's rows
# what each kind shows the judge (the report's legend of the calibration panel)
DESCRIPTIONS = {
    "noise": "class mean + independent voxel noise: fails the texture view (AUC near 1).",
    "mean": "the class mean image every time: zero diversity (syn–syn MS-SSIM near 1, recall near 0).",
    "copy": "training volumes re-emitted: a copy fools the classifier (AUC near 0.5); only the memorization "
            "audit catches it (memorized fraction near 1).",
    "pca": "a Gaussian in the span of the training volumes: what a linear model of the data reaches; a "
           "generator that learned anatomy should do at least as well.",
}
CHUNK = 1 << 16  # voxels per chunk in the streamed passes


@dataclasses.dataclass
class _ClassModel:
    label: str | None
    index: np.ndarray  # (n_c,) rows of the training array
    mean: np.ndarray  # (V,) float64 flattened class mean (0 outside the mask)
    sd: np.ndarray | None  # (V,) per-voxel sd (noise)
    coef: np.ndarray | None  # (n_c, K) map z -> w (pca)
    variances: np.ndarray | None  # (K,) lambda_k (pca)


def _chunks(v: int, size: int = CHUNK) -> Iterator[slice]:
    for a in range(0, v, size):
        yield slice(a, min(v, a + size))


class ReferenceModel:
    """A fitted reference generator (see the module docstring); draw with :meth:`sample`."""

    def __init__(self, kind: str, flat: np.ndarray, shape: tuple[int, ...], mask: np.ndarray,
                 classes: list[_ClassModel], components: int | None):
        self.kind, self._flat, self.shape, self.mask = kind, flat, tuple(shape), mask
        self._classes = {c.label: c for c in classes}
        self.components = components

    @property
    def labels(self) -> list[str | None]:
        """The classes, in fitting order (``[None]`` for an unconditional model)."""
        return list(self._classes)

    def info(self) -> dict:
        """JSON-able description: kind, classes with their training counts and (pca) components."""
        return {"kind": self.kind, "components": self.components,
                "classes": {str(k): {"n_train": int(len(c.index)),
                                     **({"components": int(c.coef.shape[1]),
                                         "variance_sum": float(c.variances.sum())} if c.coef is not None else {})}
                            for k, c in self._classes.items()}}

    def to_arrays(self, class_names: list[str | None]) -> dict[str, np.ndarray]:
        """The fitted state as named arrays (for safetensors: no pickles), classes in ``class_names`` order."""
        out: dict[str, np.ndarray] = {"train": np.ascontiguousarray(self._flat, dtype=np.float32)}
        for k, name in enumerate(class_names):
            c = self._classes[name]
            out[f"class{k}.index"] = np.asarray(c.index, dtype=np.int64)
            out[f"class{k}.mean"] = np.asarray(c.mean, dtype=np.float64)
            for field in ("sd", "coef", "variances"):
                if getattr(c, field) is not None:
                    out[f"class{k}.{field}"] = np.ascontiguousarray(getattr(c, field), dtype=np.float64)
        return out

    @classmethod
    def from_arrays(cls, kind: str, arrays: dict[str, np.ndarray], shape: tuple[int, ...], mask: np.ndarray,
                    class_names: list[str | None], components: int | None) -> ReferenceModel:
        """The inverse of :meth:`to_arrays` (nothing is refitted); KeyError when an array is missing."""
        classes = [_ClassModel(label=name, index=arrays[f"class{k}.index"], mean=arrays[f"class{k}.mean"],
                               **{f: arrays.get(f"class{k}.{f}") for f in ("sd", "coef", "variances")})
                   for k, name in enumerate(class_names)]
        return cls(kind, arrays["train"], shape, mask, classes, components)

    def _class(self, label: str | None) -> _ClassModel:
        if label not in self._classes:
            known = ", ".join(str(k) for k in self._classes)
            raise NeuroditError(f"no class '{label}' in the reference model (classes: {known})")
        return self._classes[label]

    def plan(self, n: int, label: str | None = None) -> list[str | None]:
        """The labels of ``n`` samples: ``label`` n times, or the classes cycled (balanced)."""
        if n < 1:
            raise NeuroditError(f"--n must be >= 1, got {n}")
        if label is not None or list(self._classes) == [None]:
            return [self._class(label).label] * n
        order = list(self._classes)
        return [order[i % len(order)] for i in range(n)]

    def iter_samples(self, n: int, label: str | None = None, seed: int = 0,
                     batch: int = 16) -> Iterator[tuple[np.ndarray, str | None]]:
        """Yield ``n`` ``(volume (D, H, W) float32 mm²/s, label)``; ``label=None`` cycles through the
        classes (balanced). Same seed, same volumes."""
        plan = self.plan(n, label)
        rng = np.random.default_rng(seed)
        # copy: a seeded shuffle of each class's subjects, cycled
        cursor = {k: 0 for k in self._classes}
        perms = {k: rng.permutation(len(c.index)) for k, c in self._classes.items()}
        m = self.mask.ravel()
        for start in range(0, n, batch):
            labs = plan[start:start + batch]
            out = np.zeros((len(labs), self._flat.shape[1]), dtype=np.float32)  # (B, V)
            for lab in dict.fromkeys(labs):
                rows = [i for i, x in enumerate(labs) if x == lab]
                c = self._classes[lab]
                if self.kind == "mean":
                    out[rows] = c.mean
                elif self.kind == "noise":
                    z = rng.standard_normal((len(rows), len(c.mean)))
                    out[rows] = c.mean + z * c.sd
                elif self.kind == "copy":
                    pick = []
                    for _ in rows:
                        pick.append(c.index[perms[lab][cursor[lab] % len(c.index)]])
                        cursor[lab] += 1
                    for r, p in zip(rows, pick, strict=True):
                        out[r] = self._flat[p]
                else:  # pca: mean + w^T X with w = coef z, (B, n_c)
                    w = rng.standard_normal((len(rows), c.coef.shape[1])) @ c.coef.T
                    for sl in _chunks(self._flat.shape[1]):
                        out[rows, sl] = c.mean[sl] + w @ self._flat[c.index, sl].astype(np.float64)
            out[:, ~m] = 0.0
            np.clip(out, 0.0, None, out=out)
            for vol, lab in zip(out, labs, strict=True):
                yield vol.reshape(self.shape), lab

    def sample(self, n: int, label: str | None = None, seed: int = 0) -> tuple[np.ndarray, list[str | None]]:
        """``n`` volumes ``(n, D, H, W)`` float32 in mm²/s and their labels (see :meth:`iter_samples`)."""
        vols = np.empty((n, *self.shape), dtype=np.float32)
        labs: list[str | None] = []
        for i, (v, lab) in enumerate(self.iter_samples(n, label, seed)):
            vols[i] = v
            labs.append(lab)
        return vols, labs


def fit_reference(volumes_mm2s: np.ndarray, labels: Sequence[str | None] | None, mask: np.ndarray,
                  kind: str, components: int | None = None) -> ReferenceModel:
    """Fit a class-conditional reference generator of ``kind`` (one of :data:`KINDS`).

    volumes_mm2s: (N, D, H, W) float32 (an np.memmap works; it is not copied). labels: one class per
    volume (volumes labelled None are left out when any label is given), or None for one class.
    mask: (D, H, W) bool brain mask, best the union of the training brains
    (``neurodit.data.mask.support_mask(vols, min_fraction=1e-6)``). components: pca only, keep the K largest (default all n_c - 1).
    """
    if kind not in KINDS:
        raise NeuroditError(f"unknown reference generator '{kind}' (use {', '.join(KINDS)})")
    vols = np.asarray(volumes_mm2s)
    if vols.ndim != 4 or len(vols) < 1:
        raise NeuroditError(f"training volumes must be (N, D, H, W), got shape {vols.shape}")
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != vols.shape[1:]:
        raise NeuroditError(f"mask shape {mask.shape} differs from the volumes' {vols.shape[1:]}")
    if components is not None and components < 1:
        raise NeuroditError(f"--components must be >= 1, got {components}")
    n = len(vols)
    flat = vols.reshape(n, -1)  # (N, V) view, no copy for contiguous arrays and memmaps
    m = mask.ravel()
    if labels is None or all(x is None for x in labels):
        groups: dict[str | None, list[int]] = {None: list(range(n))}
    else:
        if len(labels) != n:
            raise NeuroditError(f"{len(labels)} labels for {n} volumes")
        groups = {}
        for i, lab in enumerate(labels):
            if lab is not None:
                groups.setdefault(str(lab), []).append(i)
    classes = []
    for lab, idx in sorted(groups.items(), key=lambda kv: str(kv[0])):
        idx = np.asarray(idx)
        nc = len(idx)
        if kind in ("pca", "noise") and nc < 2:
            raise NeuroditError(f"class '{lab}' has {nc} training volume(s); {kind} needs >= 2")
        mean = np.zeros(flat.shape[1])
        sd = np.zeros(flat.shape[1]) if kind == "noise" else None
        gram = np.zeros((nc, nc)) if kind == "pca" else None
        for sl in _chunks(flat.shape[1]):
            x = flat[idx, sl].astype(np.float64) * m[sl]  # (n_c, chunk), 0 outside the mask
            mu = x.mean(0)
            mean[sl] = mu
            if sd is not None:
                sd[sl] = x.std(0, ddof=1)
            if gram is not None:
                xc = x - mu
                gram += xc @ xc.T
        coef = variances = None
        if gram is not None:
            lam, vec = np.linalg.eigh(gram / (nc - 1))  # ascending
            keep = lam > max(lam.max(), 0.0) * 1e-10
            lam, vec = lam[keep][::-1], vec[:, keep][:, ::-1]
            if components is not None:
                lam, vec = lam[:components], vec[:, :components]
            coef, variances = vec / np.sqrt(nc - 1), lam  # (n_c, K): w = coef z
        classes.append(_ClassModel(lab, idx, mean, sd, coef, variances))
    return ReferenceModel(kind, flat, vols.shape[1:], mask, classes, components)


def write_baseline(train_cohort: str | Path, kind: str, n: int, out: str | Path, *,
                   label: dict[str, str] | None = None, condition: str = "sex", components: int | None = None,
                   seed: int = 0, overwrite: bool = False) -> Path:
    """``neurodit baseline``: fit ``kind`` on the cohort folder ``train_cohort`` (class-conditional on the
    ``condition`` column, or on ``label``'s column) and write ``n`` samples as a synthetic cohort folder
    ``out`` (the format of ``neurodit sample``). Without ``label`` the samples are balanced over the
    classes. Returns ``out``.
    """
    from neurodit.data.cohort import load_volumes, read_cohort

    if kind not in KINDS:
        raise NeuroditError(f"--kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if n < 1:
        raise NeuroditError(f"--n must be >= 1, got {n}")
    label = dict(label or {})
    if len(label) > 1:
        raise NeuroditError(f"--label takes one column=value, got {label}")
    cohort = read_cohort(train_cohort)
    tsv = Path(train_cohort) / "participants.tsv"
    col, wanted = (next(iter(label.items())) if label else (condition, None))
    if col not in cohort.table.columns:
        if label:
            raise NeuroditError(f"--label: no column '{col}' (columns: {', '.join(cohort.table.columns)})", tsv)
        labels = None
    else:
        labels = [None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
                  for v in cohort.table[col]]
        if all(v is None for v in labels):
            if label:
                raise NeuroditError(f"--label: column '{col}' is empty", tsv)
            labels = None
        elif len({v for v in labels if v is not None}) > 20:
            raise NeuroditError(f"column '{col}' has more than 20 distinct values: not a class label "
                                "(choose --condition/--label on a categorical column)", tsv)
    if wanted is not None and wanted not in set(labels or []):
        raise NeuroditError(f"--label {col}={wanted}: no training volume has it "
                            f"(values: {', '.join(sorted({v for v in labels or [] if v}))})", tsv)
    vols, grid = load_volumes(cohort, grid=None)
    return write_reference_samples(
        vols, labels, n, grid.affine, out, kind=kind, column=col, wanted=wanted, components=components,
        seed=seed, overwrite=overwrite, map_name=cohort.map,
        meta={"train_cohort": str(Path(train_cohort).resolve()), "kind": kind, "n": n, "label": label,
              "condition": col if labels is not None else None, "components": components})


def write_reference_samples(vols_mm2s: np.ndarray, labels: Sequence[str | None] | None, n: int, affine: np.ndarray,
                            out: str | Path, *, kind: str = "pca", column: str = "sex", wanted: str | None = None,
                            components: int | None = None, seed: int = 0, overwrite: bool = False,
                            meta: dict | None = None, map_name: str = "md") -> Path:
    """Fit ``kind`` on ``vols_mm2s`` (N, D, H, W) with class ``labels`` and write ``n`` samples (balanced
    over the classes, or all of class ``wanted``) as the synthetic cohort folder ``out``, drawn batch by
    batch (memory flat in ``n``); ``labels`` go to the table's ``column``. Returns ``out``."""
    from neurodit.data.mask import support_mask
    from neurodit.data.synthetic import write_synthetic_cohort

    # the union of the training brains: a tighter mask would cut the edge of the larger brains, which
    # texture views and CNNs detect at once (measured: a copy then scored C2ST AUC 0.85 instead of 0.5)
    mask = support_mask(vols_mm2s, min_fraction=1e-6)
    model = fit_reference(vols_mm2s, labels, mask, kind, components)
    labs_plan = model.plan(n, wanted)
    gen = (v for v, _ in model.iter_samples(n, wanted, seed))
    columns = {column: labs_plan} if labels is not None else {}
    return write_synthetic_cohort(gen, columns, affine, out, meta=meta or {"kind": kind, "n": n}, seed=seed,
                                  overwrite=overwrite, stage="baseline", reference=model.info(), map_name=map_name)

