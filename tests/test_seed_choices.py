"""The seed methods' recorded choices (issue 20): declared on the plugin, each option a real setting."""

from __future__ import annotations

import dataclasses
import re

import pytest

from adbench.plugins import dma_sap, kanoclip, patchead, vip2clip

FIELDS = {"topic", "default", "deviation", "effect", "option"}


@pytest.mark.parametrize(
    "module,cls",
    [
        (dma_sap, dma_sap.DMASAP),
        (kanoclip, kanoclip.KAnoCLIP),
        (patchead, patchead.PatchEAD),
        (vip2clip, vip2clip.ViP2CLIP),
    ],
)
def test_choices_are_declared_and_their_options_are_settings(module, cls):
    assert cls.official_source == module.OFFICIAL_SOURCE and cls.official_source
    assert module.FIDELITY_CHOICES
    names = {f.name for f in dataclasses.fields(cls.config_cls)}
    for choice in module.FIDELITY_CHOICES:
        assert set(choice) == FIELDS and choice["topic"] and choice["default"]
        for method, field in re.findall(r"--set (\w+)\.(\w+)=", choice["option"]):
            assert method == cls.name and field in names, choice["option"]
    # every config field whose docstring says "choice" is declared as one
    documented = [
        f.name for f in dataclasses.fields(cls.config_cls) if "choice:" in f.metadata.get("doc", "")
    ]
    options = " ".join(c["option"] for c in module.FIDELITY_CHOICES)
    assert all(f"{cls.name}.{name}=" in options for name in documented), documented
