"""kanoclip: knowledge-driven prompt learning (KnPL), CLIP-VV, Bi-CMCI and a Conv-Adapter.

Paper: Li et al., "KAnoCLIP: Zero-Shot Anomaly Detection through Knowledge-Driven Prompt Learning and
Enhanced Cross-Modal Integration" (``shared/papers/kanoclip.txt``, Sec. 2-3, ablation Table 3).
Frozen CLIP ViT-L/14@336; learnable prefixes of length 12, P_n = [N_1..N_K][normal][class],
P_a = [A_1..A_K][abnormal][class] with the state words "normal"/"perfect" and "abnormal"/"defective";
KD loss max(0, d(w̄k, w̄a) - d(w̄k, w̄n)) on L2-normalised means with Euclidean d (Eq. 2-3); CLIP-VV
patch tokens; Bi-CMCI at 4 stages, M_n, M_a = Norm(sum of stages), M = G_σ(M_a + 1 - M_n) / 2;
Conv-Adapter on the global feature, S_global = softmax(Î_G F_text^T) + max(M); loss
KD + BCE(S_global) + focal(M_a, G) + dice(M_n, 1 - G) + dice(M_a, G), all weights 1. Trained on the
auxiliary data's test split. Ablations (Table 3) are ``knpl``, ``clip_vv``, ``bi_cmci``, ``conv_adapter``.

Choices where the paper is silent (all are config values or stated here):
* Knowledge base: the paper asks GPT-3.5 (n = 5 per class) and Llama3 VQA (m = 1 per image). No model
  can be called here: the LLM part is the shipped, versioned ``data/kanoclip_knowledge_v1.json`` (5
  sentences per object, written for this project, generic sentences for unknown objects); a live
  provider plugs in through the ``adbench_knowledge_providers`` hook (``knowledge=auto`` prefers it;
  answers cached on disk, their hash in job and fit keys). The per-image VQA part (m = 1) is not
  modelled (m = 0): w̄k is the mean over the class's LLM sentences only.
* Class names are ``Dataset.object_name`` of each category ("pcb1" -> "printed circuit board"); the
  learnable prefixes are shared by all classes; w̄n / w̄a of a class average its state-word prompts.
  The KD loss is averaged over the classes of the batch's training set.
* Stages: blocks 6/12/18/24 of ViT-L (AnomalyCLIP / APRIL-GAN's taps; proportionally fewer on smaller
  models, 1-4 on the 4-block tiny demo model). All patch tokens are projected into the text space
  (CLIP's ``ln_post`` + projection), so Bi-CMCI works at the joint width (768 for ViT-L).
* CLIP-VV (**choice** ``vv_blocks``): Sec. 2.3 introduces "a V-V attention mechanism [10]", [10]
  being CLIP Surgery, whose code (xmed-lab/CLIP_Surgery at 9f5be11, clip/clip_surgery_model.py,
  ``VisionTransformer.forward``: "apply architecture surgery on the last 6 blocks", ``for i in
  range(1, 7)`` over ``resblocks[-i]``) runs the V-V path in the last 6 blocks: the default
  ``vv_blocks`` = 6 (19-24 of ViT-L; proportionally fewer on smaller models, at least 1). A stage
  before that (6/12/18) reads the one stream there is, the Q-K path's tokens, as CLIP Surgery's
  encoder has no second path there; the deepest stage reads the V-V path (V-V attention of each
  block added to the stream, MLP skipped). ``vv_blocks`` = 19 (AnomalyCLIP's DPAM, the earlier
  default) puts every stage on the V-V path. The global feature I_G is CLIP's projected CLS from
  the Q-K path (CLIP Surgery replaces the V-V path's CLS with the original one).
* Bi-CMCI stage: deformable self-attention over the grid (DAT: reference points every ``deform_stride``
  tokens, offsets from the pooled queries, tanh-bounded to ``offset_range`` tokens, ``heads`` heads, no
  relative position bias), self-attention over the two text tokens, then bidirectional cross-attention
  with one shared similarity matrix (BiXT) in both directions; every residual branch starts at zero,
  so an untrained stage passes features through. Stage maps are softmax over {normal, abnormal} of
  cosine / ``temperature`` (0.07); Norm(sum) is the mean over stages (each stage map lies in [0, 1]).
* G_σ: the runner's Gaussian (``smoothing_sigma`` = 4 px at evaluation size) filters the output map;
  the image score takes max(M) of the map filtered with the same σ at input size. S_global is halved,
  (softmax + max(M)) / 2, so it stays a probability for the BCE; during training max(M) is taken on
  the unfiltered token-grid map.
* Conv-Adapter: on one global vector the depthwise convolution has spatial size 1 (a per-channel
  scale); bottleneck C / ``adapter_reduction`` (4). ``adapter_residual`` (**choice**): Eq. 11,
  Î_G = ReLU(LN(I_G) W_down) W_up, has no residual, so the default is the branch alone (torch's
  default initialisation); ``adapter_residual=true`` adds I_G with W_up started at zero, so the
  untrained adapter returns CLIP's feature (the earlier form).
* With ``knpl=false`` the prefixes are still learned (CoOp style) without the KD term.
* Optimiser (**choice** ``betas``): the paper gives none and says it trains "following APRIL-GAN and
  AnomalyCLIP"; AnomalyCLIP's schedule is used whole: Adam, lr 1e-3, betas (0.5, 0.999), batch 8,
  15 epochs (torch's default betas (0.9, 0.999), used earlier against this docstring, are
  ``--set kanoclip.betas=0.9,0.999``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lazy_loader as lazy

from adbench import hookimpl
from adbench.backbones.spec import require_text_tower, scale_taps
from adbench.config import setting
from adbench.data import Category
from adbench.errors import AdbenchError
from adbench.fidelity import Choice
from adbench.knowledge import KnowledgeProvider, choose_provider, describe, knowledge_hash
from adbench.losses import image_bce, knowledge_margin_loss, normal_anomalous_map_loss
from adbench.methods import Context, Method, Prediction, TrainedConfig

from .kanoclip_knowledge import KNOWLEDGE_FILE, shipped_knowledge

torch = lazy.load("torch")  # imported on first use: `adbench list` / `--help` stay torch-free

CLIP_DEPTH = 24
OFFICIAL_SOURCE = "paper: Li et al., KAnoCLIP (arXiv 2501.03786; no official code); V-V path: xmed-lab/CLIP_Surgery @ 9f5be11"
#: Recorded choices, field for field ``adbench.fidelity.Choice`` (topic, default, deviation, effect, option).
FIDELITY_CHOICES: tuple[dict[str, str], ...] = (
    {
        "topic": "CLIP-VV blocks",
        "default": "V-V path in the last 6 blocks (CLIP Surgery, cited [10]: clip_surgery_model.py 'for i in range(1, 7)')",
        "deviation": "stages 6/12/18 read the Q-K stream (no V-V path there)",
        "effect": "earlier default 19 (AnomalyCLIP DPAM) put every stage on the V-V path",
        "option": "--set kanoclip.vv_blocks=19",
    },
    {
        "topic": "Conv-Adapter residual",
        "default": "Eq. 11 as written: I_G' = ReLU(LN(I_G) W_down) W_up, no residual",
        "deviation": "none",
        "effect": "the earlier residual form started as the identity (CLIP's CLS)",
        "option": "--set kanoclip.adapter_residual=true",
    },
    {
        "topic": "Adam betas",
        "default": "(0.5, 0.999) with lr 1e-3, batch 8, 15 epochs: AnomalyCLIP's schedule (paper silent, 'following AnomalyCLIP')",
        "deviation": "paper gives no optimiser settings",
        "effect": "earlier torch defaults (0.9, 0.999) contradicted the docstring",
        "option": "--set kanoclip.betas=0.9,0.999",
    },
)


@dataclass
class KAnoCLIPConfig(TrainedConfig):
    """kanoclip settings; defaults are the paper's (Sec. 2, 3.1) or the choices in the module docstring."""

    backbone: str = "clip-vitl14-336"
    image_size: int = setting(336, ge=14, le=4096)
    n_ctx: int = setting(12, ge=1, doc="learnable prefix length K")
    normal_words: tuple[str, ...] = ("normal", "perfect")
    abnormal_words: tuple[str, ...] = ("abnormal", "defective")
    stage_layers: tuple[int, ...] = setting((6, 12, 18, 24), ge=1, doc="Bi-CMCI stages (blocks of ViT-L)")
    vv_blocks: int = setting(
        6,
        ge=1,
        doc="choice: CLIP-VV in the last blocks of ViT-L: CLIP Surgery's 6 (cited as [10]); 19 = DPAM, every stage",
    )
    adapter_residual: bool = setting(
        False, doc="choice: Eq. 11 has no residual; true adds I_G (W_up starts at zero)"
    )
    knpl: bool = True
    clip_vv: bool = True
    bi_cmci: bool = True
    conv_adapter: bool = True
    knowledge: str = setting("auto", doc="knowledge provider name; auto = a plugged-in one, else shipped")
    heads: int = setting(8, ge=1)
    deform_stride: int = setting(2, ge=1)
    offset_range: float = setting(2.0, ge=0)
    adapter_reduction: int = setting(4, ge=1)
    temperature: float = setting(0.07, gt=0)
    kd_weight: float = setting(1.0, ge=0)
    global_weight: float = setting(1.0, ge=0)
    local_weight: float = setting(1.0, ge=0)
    lr: float = setting(1e-3, gt=0)
    betas: tuple[float, ...] = setting(
        (0.5, 0.999), ge=0, lt=1, doc="choice: Adam betas of AnomalyCLIP's schedule (paper silent)"
    )
    batch_size: int = setting(8, ge=1)
    epochs: int = setting(15, ge=0)


def knowledge_provider(config: KAnoCLIPConfig) -> KnowledgeProvider:
    """The provider ``config.knowledge`` names among the registered ones."""
    from adbench.registry import get_registry

    return choose_provider(get_registry().knowledge_providers(), config.knowledge)


class KAnoCLIP(Method):
    """Knowledge-driven prompts, V-V patch tokens, Bi-CMCI maps and a Conv-Adapter; trained on auxiliary data."""

    name = "kanoclip"
    display_name = "KAnoCLIP"
    official_source = OFFICIAL_SOURCE
    choices = tuple(Choice(**c) for c in FIDELITY_CHOICES)
    description = (
        "CLIP ViT-L/14@336 with knowledge-driven learnable prompts (KD loss), V-V attention, bidirectional "
        "cross-modal interaction at 4 stages and a Conv-Adapter; trained on an auxiliary dataset (Li et al. 2025)"
    )
    config_cls = KAnoCLIPConfig
    supports = frozenset({"zero_shot"})
    default_protocol = "zero_shot"
    trained = True
    backbone_fields = ("backbone",)
    demo_backbones = {"backbone": "tiny-clip"}
    smoothing_sigma = 4.0  # G_σ of Eq. 10, applied by the runner to the output map

    @classmethod
    def backbone_requirements(cls, config: KAnoCLIPConfig) -> dict[str, frozenset[str]]:
        """Prompts through the text tower, projected patch tokens and (CLIP-VV) the V-V path."""
        needs = {"text", "projection"} | ({"vv"} if config.clip_vv else set())
        return {"backbone": frozenset(needs)}

    @classmethod
    def key_material(cls, config: KAnoCLIPConfig, object_names: Any) -> dict[str, Any]:
        """The knowledge provider's answers for these objects (hashed), when KnPL uses them."""
        if not config.knpl:
            return {}
        return {"knowledge": knowledge_hash(knowledge_provider(config), object_names)}

    @classmethod
    def info_lines(cls, config: KAnoCLIPConfig) -> list[str]:
        """The knowledge base in use: shipped version and entry count, and the chosen provider."""
        kb = shipped_knowledge()
        sentences = sum(len(v) for v in kb["classes"].values())
        lines = [
            f"knowledge base: {KNOWLEDGE_FILE} version {kb['version']}, {len(kb['classes'])} objects, "
            f"{sentences} descriptions, {len(kb['generic'])} generic fallbacks"
        ]
        try:
            lines.append(
                f"knowledge provider (knowledge={config.knowledge}): {knowledge_provider(config).name}"
            )
        except AdbenchError as exc:
            lines.append(f"knowledge provider: {exc}")
        return lines

    def setup(self) -> None:
        from adbench.backbones import build_backbone

        cfg = self.config
        clip = build_backbone(cfg.backbone, device=self.device, pretrained=self.pretrained_backbones)
        self._weights = {cfg.backbone: clip.weights}
        self.attach(clip)

    def attach(self, clip: torch.nn.Module) -> None:
        """Build the learnable parts for a frozen CLIP backbone (``setup`` builds it by name)."""
        from .kanoclip_modules import BiCMCI, ConvAdapter, KnowledgePromptLearner

        cfg = self.config
        require_text_tower(clip, "kanoclip.backbone", cfg.backbone)
        self.clip = clip
        self.stages = scale_taps(cfg.stage_layers, CLIP_DEPTH, clip.num_blocks)
        scaled = max(1, round(cfg.vv_blocks * clip.num_blocks / CLIP_DEPTH))
        self.vv_blocks = min(clip.num_blocks, scaled) if cfg.clip_vv else 0
        dim = int(clip.output_dim)
        if dim % cfg.heads:
            raise AdbenchError(f"kanoclip.heads={cfg.heads}: must divide the feature width {dim}")
        parts: dict[str, torch.nn.Module] = {
            "prompts": KnowledgePromptLearner(
                dim_of_tokens(clip), cfg.n_ctx, cfg.normal_words, cfg.abnormal_words
            ),
            "bicmci": BiCMCI(
                dim,
                stages=len(self.stages),
                enabled=cfg.bi_cmci,
                heads=cfg.heads,
                stride=cfg.deform_stride,
                offset_range=cfg.offset_range,
                temperature=cfg.temperature,
            ),
        }
        if cfg.conv_adapter:
            parts["adapter"] = ConvAdapter(dim, cfg.adapter_reduction, residual=cfg.adapter_residual)
        self.learnable = torch.nn.ModuleDict(parts).to(self.device)
        self.learnable.eval()
        self.train_classes: list[str] = []
        self._knowledge: dict[str, torch.Tensor] = {}

    # --- text side -----------------------------------------------------------------------------
    def text_features(self, class_names: list[str]) -> torch.Tensor:
        """(C, 2, D) normal / abnormal features of the learnable prompts for each class (frozen text tower)."""
        clip = self.clip
        return self.learnable["prompts"](
            class_names, clip.tokenize, clip.token_embedding, clip.encode_text_embeddings
        )

    def knowledge_sentences(self, object_name: str) -> list[str]:
        """The knowledge provider's anomaly descriptions of an object (the KnPL prompts p^LLM)."""
        return describe(knowledge_provider(self.config), object_name)

    def knowledge_features(self, class_names: list[str]) -> torch.Tensor:
        """(C, D) w̄k: mean frozen text feature of each class's knowledge sentences (computed once)."""
        for name in class_names:
            if name not in self._knowledge:
                with torch.no_grad():
                    self._knowledge[name] = (
                        self.clip.encode_text(self.knowledge_sentences(name)).float().mean(0)
                    )
        return torch.stack([self._knowledge[n] for n in class_names])

    # --- the trained-method hooks ----------------------------------------------------------------
    def learnable_module(self) -> torch.nn.Module:
        return self.learnable

    def auxiliary_targets(self, categories: list[Category]) -> dict[str, torch.Tensor]:
        """Each auxiliary test image's class index into ``train_classes`` (the categories' object names)."""
        self.train_classes = list(dict.fromkeys(c.object_name for c in categories))
        index = [self.train_classes.index(c.object_name) for c in categories for _ in c.test]
        return {"class_index": torch.tensor(index, dtype=torch.long)}

    def frozen_features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Projected patch tokens of each stage and the projected CLS (I_G): with CLIP-VV a stage inside
        the V-V blocks reads the V-V path, one before them the only stream there is (CLIP Surgery)."""
        t = self.clip.forward_tokens(images, self.stages, project=True, vv_blocks=self.vv_blocks)
        feats = {f"stage{i}": t.vv.get(s, t.patches[s]) for i, s in enumerate(self.stages)}
        feats["cls"] = t.cls
        return feats

    def forward_head(
        self, feats: dict[str, torch.Tensor], text: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """M_n, M_a (N, h, w) and softmax(Î_G F_text^T)[abnormal] (N,) for per-image text (N, 2, D)."""
        from .kanoclip_modules import global_probability

        patches = [feats[f"stage{i}"].float() for i in range(len(self.stages))]
        m_n, m_a = self.learnable["bicmci"](patches, text.float())
        glob = feats["cls"].float()
        if "adapter" in self.learnable:
            glob = self.learnable["adapter"](glob)
        return m_n, m_a, global_probability(glob, text.float(), self.config.temperature)

    def training_loss(
        self, features: dict[str, torch.Tensor], masks: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        from .kanoclip_modules import combine_maps

        cfg = self.config
        if not self.train_classes:
            raise AdbenchError(
                "kanoclip: training needs each image's class (auxiliary_targets was not called)"
            )
        text = self.text_features(self.train_classes)  # (C, 2, D)
        m_n, m_a, g = self.forward_head(features, text[features["class_index"]])
        # focal(M_a, G) + dice(M_n, 1 - G) + dice(M_a, G) (the paper's local loss): AnomalyCLIP's local loss, whose
        # two-way focal equals the binary focal of M_a here because M_n + M_a = 1 (a softmax pair)
        local = normal_anomalous_map_loss(m_n, m_a, masks)
        s_global = (g + combine_maps(m_n, m_a).flatten(1).amax(1)) / 2
        glob = image_bce(s_global, labels)
        loss = cfg.global_weight * glob + cfg.local_weight * local
        parts = {"global": float(glob.detach()), "local": float(local.detach())}
        if cfg.knpl:
            w_k = self.knowledge_features(self.train_classes).to(text.device)
            kd = knowledge_margin_loss(w_k, text[:, 0], text[:, 1])
            loss = loss + cfg.kd_weight * kd
            parts["kd"] = float(kd.detach())
        return loss, parts

    def predict(self, images: torch.Tensor, ctx: Context) -> Prediction:
        from torchvision.transforms.functional import gaussian_blur

        from .kanoclip_modules import combine_maps

        name = ctx.object_name or ctx.category.replace("_", " ")
        with torch.no_grad():
            feats = self.frozen_features(images)
            text = self.text_features([name]).expand(len(images), -1, -1)
            m_n, m_a, g = self.forward_head(feats, text)
            amap = torch.nn.functional.interpolate(
                combine_maps(m_n, m_a)[:, None], size=images.shape[-2:], mode="bilinear", align_corners=False
            )
            sigma = self.smoothing_sigma
            smoothed = (
                gaussian_blur(amap, kernel_size=2 * round(4 * sigma) + 1, sigma=sigma) if sigma else amap
            )
            scores = (g + smoothed.flatten(1).amax(1)) / 2
        return Prediction(scores=scores.float(), maps=amap[:, 0].float())


def dim_of_tokens(clip: torch.nn.Module) -> int:
    """Width of the text tower's token embeddings (the learnable prefix vectors)."""
    return int(clip.token_embedding.weight.shape[-1])


@hookimpl
def adbench_methods() -> list[type[Method]]:
    return [KAnoCLIP]
