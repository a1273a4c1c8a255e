"""Config overrides: typed coercion, grid expansion, one-line errors, stable hashing."""

from dataclasses import dataclass
from typing import Literal

import pytest

from adbench.config import expand, parse_set_options, stable_hash, to_dict
from adbench.errors import AdbenchError


@dataclass
class Cfg:
    image_size: int = 448
    lr: float = 1e-3
    align: bool = False
    layers: tuple[int, ...] = (4, 8, 12)
    variant: Literal["A", "B", "C", "D"] = "D"
    weights: str | None = None


def test_parse_and_coerce_types():
    sets = parse_set_options(
        ["m.image_size=224", "m.lr=0.01", "m.align=true", "m.layers=1,2", "m.weights=none"]
    )
    (cfg,) = expand(Cfg, sets["m"], "m")
    assert cfg == Cfg(image_size=224, lr=0.01, align=True, layers=(1, 2), weights=None)


def test_scalar_list_expands_grid_and_tuple_uses_pipe():
    sets = parse_set_options(["m.variant=A,B,C,D", "m.layers=4,8|6,12"])
    configs = expand(Cfg, sets["m"], "m")
    assert len(configs) == 8
    assert {c.variant for c in configs} == {"A", "B", "C", "D"}
    assert {c.layers for c in configs} == {(4, 8), (6, 12)}


@pytest.mark.parametrize(
    "item, message",
    [
        ("m.image_sise=3", "did you mean 'image_size'"),
        ("m.image_size=big", "m.image_size='big'"),
        ("m.variant=E", "expected one of A, B, C, D"),
        ("m.align=maybe", "expected true or false"),
    ],
)
def test_bad_overrides_give_one_line_errors(item, message):
    with pytest.raises(AdbenchError) as err:
        expand(Cfg, parse_set_options([item])["m"], "m")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_malformed_set_option():
    with pytest.raises(AdbenchError, match="scope.field=value"):
        parse_set_options(["image_size=3"])


def test_stable_hash_is_order_independent_and_sensitive():
    a = to_dict(Cfg())
    b = dict(reversed(list(a.items())))
    assert stable_hash(a) == stable_hash(b)
    assert stable_hash(a) != stable_hash(to_dict(Cfg(image_size=449)))


def test_declared_ranges_are_checked_before_any_work():
    from adbench.config import setting

    @dataclass
    class Ranged:
        size: int = setting(448, ge=14)
        frac: float = setting(0.3, gt=0, le=1)
        taps: tuple[int, ...] = setting((1, 2), ge=1)

    assert expand(Ranged, {"frac": ["1"]}, "m")[0].frac == 1.0
    for field, raw, bound in [
        ("size", "0", ">= 14"),
        ("frac", "-1", "> 0, <= 1"),
        ("frac", "7", "> 0, <= 1"),
        ("taps", "1,0", ">= 1"),
    ]:
        with pytest.raises(AdbenchError, match=rf"m\.{field}=.*must be {bound}"):
            expand(Ranged, {field: [raw]}, "m")


def test_builtin_method_configs_declare_the_engine_bases():
    from adbench.methods import MethodConfig, TrainedConfig
    from adbench.registry import get_registry

    for entry in get_registry().entries("method"):
        cls = entry.obj
        assert issubclass(cls.config_cls, TrainedConfig if cls.trained else MethodConfig), cls.name


def test_text_patterns_and_empty_bounded_lists_are_refused_before_any_work():
    from adbench.config import validate
    from adbench.plugins.clip_zero_shot import CLIPConfig
    from adbench.plugins.mvfa import MVFAConfig

    validate(CLIPConfig(anomalous_word="damaged"), "clip")
    for word in ("", "{x}", " padded"):
        with pytest.raises(AdbenchError, match="clip.anomalous_word"):
            validate(CLIPConfig(anomalous_word=word), "clip")
    with pytest.raises(AdbenchError, match="mvfa.feature_layers: empty"):
        validate(MVFAConfig(feature_layers=()), "mvfa")
    with pytest.raises(AdbenchError, match="<= 24"):
        validate(MVFAConfig(feature_layers=(6, 25)), "mvfa")
