"""Training engine: losses, the frozen-feature cache, the fit loop and the fit cache (save, reuse, retrain)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from adbench.errors import AdbenchError
from adbench.feature_cache import FeatureCache
from adbench.losses import dice_loss, focal_loss, image_bce, image_cross_entropy, segmentation_loss
from adbench.methods import Context, Method, Prediction, TrainedConfig
from adbench.training import ensure_fitted, fit_key, load_auxiliary, train

from .helpers import TinyDataset, write_tiny_dataset


# --- losses ----------------------------------------------------------------------------------
def test_focal_loss_is_bce_at_gamma_zero_and_down_weights_easy_pixels():
    p, t = torch.rand(4, 8, 8).clamp(0.05, 0.95), (torch.rand(4, 8, 8) > 0.7).float()
    torch.testing.assert_close(focal_loss(p, t, gamma=0.0), F.binary_cross_entropy(p, t))
    assert focal_loss(p, t, gamma=2.0) < F.binary_cross_entropy(p, t)


def test_dice_loss_perfect_and_disjoint():
    t = torch.zeros(1, 8, 8)
    t[0, 2:5, 2:5] = 1
    assert dice_loss(t, t) < 1e-6
    assert dice_loss(1 - t, t) > 0.9


def test_segmentation_loss_resizes_and_ranks():
    mask = torch.zeros(2, 16, 16, dtype=torch.uint8)
    mask[:, 4:8, 4:8] = 1
    good = F.interpolate(mask[:, None].float(), size=(8, 8), mode="area")[:, 0].clamp(0.01, 0.99)
    assert segmentation_loss(good, mask) < segmentation_loss(1 - good, mask)


def test_image_losses():
    labels = torch.tensor([0, 1])
    assert image_cross_entropy(torch.tensor([[5.0, -5.0], [-5.0, 5.0]]), labels) < 0.01
    assert image_bce(torch.tensor([0.01, 0.99]), labels) < image_bce(torch.tensor([0.99, 0.01]), labels)
    torch.testing.assert_close(
        image_bce(torch.tensor([0.0, 2.0]), labels, from_logits=True),
        image_bce(torch.sigmoid(torch.tensor([0.0, 2.0])), labels),
    )


# --- feature cache ---------------------------------------------------------------------------
def _extract(images: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"pooled": F.avg_pool2d(images, 4), "mean": images.mean(dim=(2, 3))}


def test_feature_cache_equals_recomputation_in_memory():
    images = torch.rand(10, 3, 16, 16)
    cache = FeatureCache.build(_extract, images.split(3), 10)
    assert not cache.on_disk
    idx = torch.tensor([7, 2, 9, 0])
    got, want = cache.get(idx), _extract(images[idx])
    for k in want:
        assert torch.equal(got[k], want[k])


def test_feature_cache_on_disk_is_float16_and_cleaned_up(tmp_path):
    images = torch.rand(10, 3, 16, 16)
    cache = FeatureCache.build(_extract, images.split(4), 10, memory_limit=0, directory=tmp_path)
    assert cache.on_disk
    folder = cache.directory
    assert {p.name for p in folder.iterdir()} == {"pooled.npy", "mean.npy"}
    idx = torch.tensor([9, 1, 5])
    got, want = cache.get(idx), _extract(images[idx])
    for k in want:
        torch.testing.assert_close(got[k], want[k], atol=1e-3, rtol=1e-3)
        assert torch.equal(got[k], want[k].half().float())  # stored as float16, served as float32
    cache.close()
    assert not folder.exists()


def test_feature_cache_rejects_wrong_count():
    with pytest.raises(AdbenchError, match="expected 5 samples"):
        FeatureCache.build(_extract, torch.rand(4, 3, 8, 8).split(2), 5)


# --- a toy trained method: frozen pooled pixels, a learnable 1x1 conv ------------------------------
@dataclass
class ToyConfig(TrainedConfig):
    backbone: str = "none"
    image_size: int = 32
    epochs: int = 5
    batch_size: int = 4
    lr: float = 0.05


class ToyMethod(Method):
    name = "toy_trained"
    config_cls = ToyConfig
    trained = True
    backbone_fields = ()

    def setup(self) -> None:
        torch.manual_seed(123)
        self.head = nn.Conv2d(3, 1, 1)

    def learnable_module(self) -> nn.Module:
        return self.head

    def frozen_features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"x": F.avg_pool2d(images, 4)}

    def _maps(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.head(x)[:, 0])

    def training_loss(self, features, masks, labels):
        maps = self._maps(features["x"])
        return segmentation_loss(maps, masks), {"n": float(len(labels))}

    def predict(self, images: torch.Tensor, ctx: Context) -> Prediction:
        maps = self._maps(self.frozen_features(images)["x"])
        return Prediction(maps.flatten(1).amax(1), maps)


@pytest.fixture(scope="module")
def tiny_aux(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    write_tiny_dataset(root, categories=("alpha", "beta"), n_normal=4, n_anom=4, size=32)
    ds = TinyDataset(root)
    return [("tiny", ds.load_category(c)) for c in ds.categories()]


def _toy(**kw) -> ToyMethod:
    m = ToyMethod(ToyConfig(**kw))
    m.setup()
    return m


def test_training_loss_decreases_and_cache_matches_no_cache(tiny_aux):
    samples, masks, labels, names = load_auxiliary(tiny_aux, 32)
    assert names == ["tiny/alpha", "tiny/beta"] and len(samples) == 16 and int(labels.sum()) == 8
    cached = train(_toy(epochs=6), samples, masks, labels, seed=0, progress=False)
    assert cached.losses[-1] < cached.losses[0]
    assert cached.feature_cache == "memory"
    uncached = train(_toy(epochs=6), samples, masks, labels, seed=0, progress=False, use_cache=False)
    assert uncached.feature_cache == "off"
    torch.testing.assert_close(torch.tensor(cached.losses), torch.tensor(uncached.losses))


def test_ensure_fitted_saves_reuses_and_retrains(tiny_aux):
    images = torch.rand(3, 3, 32, 32)
    ctx = Context("zero_shot", "x")
    first = _toy()
    fit = ensure_fitted(first, tiny_aux, aux_fingerprint="fp1", seed=0, progress=False)
    assert not fit.reused and len(fit.losses) == 5 and fit.path.exists()
    assert fit.trained_on == ["tiny/alpha", "tiny/beta"]
    log = json.loads(fit.path.with_suffix(".json").read_text())
    assert (
        log["losses"] == fit.losses and log["trained_on"] == fit.trained_on and log["config"]["epochs"] == 5
    )

    fresh = _toy()
    again = ensure_fitted(fresh, tiny_aux, aux_fingerprint="fp1", seed=0, progress=False)
    assert again.reused and again.key == fit.key and again.losses == fit.losses  # from the saved log
    torch.testing.assert_close(
        fresh.predict(images, ctx).maps, first.predict(images, ctx).maps, rtol=0, atol=0
    )

    refit = ensure_fitted(_toy(), tiny_aux, aux_fingerprint="fp1", seed=0, retrain=True, progress=False)
    assert not refit.reused and refit.key == fit.key and len(refit.losses) == 5


def test_fit_key_depends_on_config_data_and_seed():
    m = _toy()
    base = fit_key(m, "fp", 0)
    assert base == fit_key(_toy(), "fp", 0)
    assert base != fit_key(m, "fp", 1)
    assert base != fit_key(m, "other", 0)
    assert base != fit_key(_toy(lr=0.01), "fp", 0)


def test_training_free_method_cannot_be_fitted(tiny_aux):
    class Free(ToyMethod):
        trained = False

    with pytest.raises(AdbenchError, match="training-free"):
        ensure_fitted(Free(ToyConfig()), tiny_aux, aux_fingerprint="fp", seed=0)


# --- dma_sap end to end on the tiny random backbones ----------------------------------------
def test_dma_sap_fit_save_load_gives_identical_scores(tiny_aux):
    from adbench.plugins.dma_sap import DMASAP, DMASAPConfig

    def make() -> DMASAP:
        cfg = DMASAPConfig(clip_backbone="tiny-clip", dino_backbone="tiny-dinov2", image_size=56, epochs=5)
        m = DMASAP(cfg, "cpu")
        torch.manual_seed(0)  # the runner seeds before setup; the init is then part of the fit's seed
        m.setup()
        return m

    trained = make()
    fit = ensure_fitted(trained, tiny_aux, aux_fingerprint="fp-dma", seed=0, progress=False)
    assert fit.losses[-1] < fit.losses[0]
    images = torch.rand(2, 3, 56, 56)
    ctx = Context("zero_shot", "x")
    fresh = make()
    before = fresh.predict(images, ctx)
    again = ensure_fitted(fresh, tiny_aux, aux_fingerprint="fp-dma", seed=0, progress=False)
    assert again.reused
    after, want = fresh.predict(images, ctx), trained.predict(images, ctx)
    assert not torch.equal(before.scores, want.scores)
    assert torch.equal(after.scores, want.scores) and torch.equal(after.maps, want.maps)


def test_zero_epochs_keeps_the_initialisation_as_a_baseline(tiny_aux):
    samples, masks, labels, _ = load_auxiliary(tiny_aux, 32)
    method = _toy(epochs=0)
    before = {k: v.clone() for k, v in method.learnable_state().items()}
    log = train(method, samples, masks, labels, seed=0, progress=False)
    assert log.losses == []
    for k, v in method.learnable_state().items():
        assert torch.equal(v, before[k])
    with pytest.raises(AdbenchError, match="epochs must be >= 0"):
        train(_toy(epochs=-1), samples, masks, labels, seed=0, progress=False)


def test_workers_needing_the_same_fit_train_it_once(tiny_aux, tmp_path, monkeypatch):
    """Two workers (threads here, processes in a run) claim the fit key: one trains, the other waits
    and loads the saved fit, with identical parameters."""
    import threading

    from adbench import training
    from adbench.store import ResultsStore

    store = ResultsStore(tmp_path / "store")
    calls = []
    real_train = training.train

    def counted(*args, **kwargs):
        calls.append(1)
        return real_train(*args, **kwargs)

    monkeypatch.setattr(training, "train", counted)
    methods = [_toy(epochs=3), _toy(epochs=3)]
    results: list = [None, None]

    def work(i: int) -> None:
        results[i] = training.ensure_fitted(
            methods[i],
            tiny_aux,
            aux_fingerprint="shared-claim-test",
            seed=0,
            progress=False,
            claim=lambda key: store.hold(f"fit-{key}", poll_s=0.05),
        )

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and sorted(r.reused for r in results) == [False, True]
    a, b = (m.learnable_state() for m in methods)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not list((tmp_path / "store" / "claims").glob("*.claim"))
