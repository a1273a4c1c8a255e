"""Baseline defaults follow their official code; the earlier forms stay reachable as recorded options."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from PIL import Image

from adbench.augment import mosaic, mosaic_batch
from adbench.fidelity import DOC_PATH, Choice, builtin_methods, render_fidelity
from adbench.methods import Method
from adbench.plugins.anomalyclip import AnomalyCLIP, AnomalyCLIPConfig
from adbench.plugins.anomalydino import AnomalyDINO, AnomalyDINOConfig
from adbench.plugins.aprilgan import APRILGAN, APRILGANConfig
from adbench.plugins.clip_zero_shot import CLIPAC, CLIPACConfig, CLIPConfig, CLIPZeroShot
from adbench.plugins.musc import MuSc, MuScConfig
from adbench.plugins.winclip import WinCLIP
from adbench.protocols import load_inputs


def test_no_map_smoothing_where_the_official_code_has_none():
    assert WinCLIP.smoothing_sigma == 0.0 and MuSc.smoothing_sigma == 0.0 and APRILGAN.smoothing_sigma == 0.0
    assert CLIPZeroShot.smoothing_sigma == 0.0
    assert AnomalyCLIP.smoothing_sigma == 4.0 and AnomalyDINO.smoothing_sigma == 4.0  # test.py / utils.py


def test_per_dataset_presets_follow_the_official_scripts():
    visa = APRILGAN.config_for_dataset(APRILGANConfig(), "visa", ("mvtec",))  # its fit trains on MVTec AD
    assert (visa.epochs, visa.mosaic_rate) == (3, 0.2) and APRILGAN.mosaic_rate(visa) == 0.2
    mvtec = APRILGAN.config_for_dataset(APRILGANConfig(), "mvtec", ("visa",))  # its fit trains on VisA
    assert (mvtec.epochs, mvtec.mosaic_rate) == (15, 0.0)
    kept = APRILGAN.config_for_dataset(APRILGANConfig(preset="none", epochs=7), "visa", ("mvtec",))
    assert (kept.epochs, kept.mosaic_rate) == (7, 0.0)
    assert MuSc.config_for_dataset(MuScConfig(), "visa").rscin_k == (1, 8, 9)
    assert MuSc.config_for_dataset(MuScConfig(), "mvtec").rscin_k == (1, 2, 3)
    assert MuSc.config_for_dataset(MuScConfig(preset="none"), "visa").rscin_k == (1, 2, 3)


def test_training_masks_are_resized_as_the_official_transforms():
    assert AnomalyCLIP.train_mask_resize(AnomalyCLIPConfig()) == "bilinear"
    assert APRILGAN.train_mask_resize(APRILGANConfig()) == "bilinear"
    assert AnomalyCLIP.train_mask_resize(AnomalyCLIPConfig(train_mask_resize="nearest")) == "nearest"


def test_mosaic_tiles_four_images_and_their_masks():
    images = torch.stack([torch.full((3, 8, 8), v) for v in (0.0, 0.25, 0.5, 1.0)])
    masks = torch.zeros(4, 8, 8, dtype=torch.uint8)
    masks[3] = 1
    image, mask = mosaic(images, masks)
    assert image.shape == (3, 8, 8) and mask.shape == (8, 8)
    assert image[0, 0, 0] < 0.05 and image[0, 7, 7] > 0.95 and abs(image[0, 0, 7] - 0.25) < 0.05
    assert mask[4:, 4:].all() and not mask[:4].any() and not mask[:, :4].any()


def test_mosaic_batch_replaces_drawn_samples_with_same_category_mosaics():
    images = torch.rand(6, 3, 8, 8)
    masks = torch.zeros(6, 8, 8, dtype=torch.uint8)
    groups = torch.tensor([0, 0, 0, 1, 1, 1])
    idx = torch.tensor([0, 4])
    feats = {"x": images[idx].mean(dim=(1, 2, 3))[:, None]}  # the batch's cached features
    extracted = []

    def extract(batch):
        extracted.append(len(batch))
        return {"x": torch.full((len(batch), 1), -1.0)}

    gen = torch.Generator().manual_seed(0)
    same, _ = mosaic_batch(idx, groups, 0.0, gen, lambda i: images[i], masks, extract, feats, masks[idx])
    assert same is feats and not extracted
    out, _ = mosaic_batch(idx, groups, 1.0, gen, lambda i: images[i], masks, extract, feats, masks[idx])
    assert extracted == [2] and (out["x"] == -1).all() and (feats["x"] != -1).all()


def test_clip_is_the_single_prompt_pair_and_clip_ac_the_descriptor_ensemble():
    assert CLIPZeroShot.published_name(CLIPConfig()) == "CLIP"
    assert CLIPAC.published_name(CLIPACConfig()) == "CLIP-AC" and CLIPAC.name == "clip_ac"
    assert CLIPZeroShot.published_name(CLIPConfig(prompts="ensemble", anomalous_word="damaged")) is None
    m = CLIPZeroShot(CLIPConfig(backbone="tiny-clip", image_size=112))
    m.setup()
    assert m._prompts.states == (("a photo of a normal {}.",), ("a photo of an anomalous {}.",))
    assert m._prompts.templates == ("{}",)
    ac = CLIPAC(CLIPACConfig(backbone="tiny-clip", image_size=112))
    ac.setup()
    assert ac._prompts.states == (("normal {}",), ("anomalous {}",)) and len(ac._prompts.templates) == 22


def test_anomalydino_keeps_the_aspect_ratio(tmp_path):
    path = tmp_path / "wide.png"
    Image.fromarray(np.zeros((40, 64, 3), np.uint8)).save(path)
    from adbench.data import Sample

    method = AnomalyDINO(AnomalyDINOConfig(backbone="tiny-dinov2", image_size=28))
    assert method.input_shape(1500, 1000) == (28, 42) and method.input_shape(1000, 1500) == (42, 28)
    batch = load_inputs([Sample("a", path, 0)], 28, method.input_shape)
    assert batch.shape == (1, 3, 28, 44)  # int(28 * 64 / 40) = 44, cropped to 42 before the ViT
    square = AnomalyDINO(AnomalyDINOConfig(backbone="tiny-dinov2", image_size=28, resize="square"))
    assert load_inputs([Sample("a", path, 0)], 28, square.input_shape).shape == (1, 3, 28, 28)
    method.setup()
    feats, grid = method.embed(batch)
    assert grid == (2, 3) and feats.shape[1] == 6


def test_every_baseline_declares_its_source_and_choices():
    for cls in (AnomalyCLIP, APRILGAN, CLIPZeroShot, WinCLIP, MuSc, AnomalyDINO):
        assert cls.official_source and cls.choices, cls.name
        assert all(isinstance(c, Choice) and c.topic and c.default for c in cls.choices)
    assert Method.choices == () and Method.smooths_own_maps is False


def test_fidelity_doc_is_generated_from_the_plugins_and_up_to_date():
    text = render_fidelity(builtin_methods())
    assert "## AnomalyCLIP (`anomalyclip`)" in text and "--set anomalyclip.feature_layers=6,12,18,24" in text
    assert DOC_PATH.read_text(encoding="utf-8") == text, "run: python -m adbench.fidelity --write"


def test_fidelity_section_lists_a_declared_choice():
    @dataclasses.dataclass
    class Cfg:
        image_size: int = 32

    class Toy(Method):
        name = "toy"
        display_name = "Toy"
        config_cls = Cfg
        official_source = "github.com/o/r @ abc"
        choices = (Choice("taps", "layer 24", "none", "the published rows", "--set toy.taps=1"),)

        def predict(self, images, ctx):  # pragma: no cover - never called
            raise NotImplementedError

    text = render_fidelity([Toy])
    assert (
        "## Toy (`toy`)" in text
        and "| taps | layer 24 | none | the published rows | `--set toy.taps=1` |" in text
    )


def test_the_training_engine_draws_mosaics_for_a_method_that_declares_them():
    from adbench.training import train

    from .test_training import ToyConfig, ToyMethod

    class MosaicToy(ToyMethod):
        @classmethod
        def mosaic_rate(cls, config):
            return 1.0

    images, masks = torch.rand(6, 3, 32, 32), torch.zeros(6, 32, 32, dtype=torch.uint8)
    labels = torch.zeros(6, dtype=torch.long)
    seen = []
    for cls in (ToyMethod, MosaicToy):
        m = cls(ToyConfig(epochs=1))
        m.setup()
        calls = []
        original = m.frozen_features
        m.frozen_features = lambda x, f=original, c=calls: (c.append(len(x)), f(x))[1]
        train(m, None, masks, labels, images=images, progress=False, groups=torch.tensor([0, 0, 0, 1, 1, 1]))
        seen.append(sum(calls))
    assert seen[0] == 6 and seen[1] == 12  # the cache, then one fresh mosaic per drawn sample
