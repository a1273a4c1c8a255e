"""open_clip CLIP models (ViT-L/14@336, ViT-B/16+ 240, ViT-B/16, tiny-clip) behind the Backbone interface.

The visual transformer is run block by block here (not through ``model.visual``) so that one model
serves any input size (position embeddings resampled per grid with timm's ``resample_abs_pos_embed``),
any blocks can be tapped, the last block's CLS attention can be read, and the V-V attention path of
CLIP Surgery / AnomalyCLIP's DPAM can run beside the original path. The text tower is exposed for
prompt learning: ``tokenize``, ``encode_text_embeddings`` (run on spliced token embeddings) and the
modules ``token_embedding``, ``positional_embedding``, ``text_transformer``, ``ln_final``,
``text_projection``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence

import open_clip
import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from timm.layers import resample_abs_pos_embed
from torch import nn

from .base import Backbone, BackboneSpec, Tokens
from .weights import WeightSource, download_failure_as_missing, is_torchscript, load_state_dict_file


def _qkv(block: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-head q, k, v (N, heads, L, d) of an open_clip ResidualAttentionBlock for its input ``x``."""
    attn = block.attn
    if not isinstance(attn, nn.MultiheadAttention):
        raise TypeError(
            "this open_clip block type has no nn.MultiheadAttention; V-V / CLS attention unsupported"
        )
    n, length, width = x.shape
    qkv = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias)
    qkv = qkv.view(n, length, 3, attn.num_heads, width // attn.num_heads).permute(2, 0, 3, 1, 4)
    return qkv[0], qkv[1], qkv[2]


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    n, heads, length, d = x.shape
    return x.transpose(1, 2).reshape(n, length, heads * d)


class OpenCLIPBackbone(Backbone):
    """A frozen open_clip ``CLIP``: visual taps, CLS attention, V-V path, and the text tower."""

    mean = tuple(OPENAI_DATASET_MEAN)
    std = tuple(OPENAI_DATASET_STD)

    def __init__(
        self, name: str, model: open_clip.CLIP, tokenizer: open_clip.tokenizer.SimpleTokenizer
    ) -> None:
        super().__init__()
        visual = model.visual
        if not isinstance(visual, open_clip.transformer.VisionTransformer) or visual.attn_pool is not None:
            raise TypeError(f"backbone '{name}': only plain open_clip VisionTransformer towers are supported")
        self.name = name
        self.model = model
        self.tokenizer = tokenizer
        self.patch_size = visual.patch_size[0]
        self.embed_dim = self.visual_width = visual.transformer.width
        self.num_blocks = len(visual.transformer.resblocks)
        self.output_dim = visual.output_dim
        self.text_width = model.transformer.width
        self.context_length = model.context_length

    # --- text tower parts (for prompt learning) --------------------------------------------------
    @property
    def token_embedding(self) -> nn.Embedding:
        return self.model.token_embedding

    @property
    def positional_embedding(self) -> torch.Tensor:
        return self.model.positional_embedding

    @property
    def text_transformer(self) -> nn.Module:
        return self.model.transformer

    @property
    def ln_final(self) -> nn.Module:
        return self.model.ln_final

    @property
    def text_projection(self) -> torch.Tensor:
        return self.model.text_projection

    # --- vision ----------------------------------------------------------------------------------
    def pos_embed(self, grid: tuple[int, int]) -> torch.Tensor:
        """Position embeddings (1, 1 + h*w, D) for a patch grid, bicubically resampled from the trained grid."""
        pos = self.model.visual.positional_embedding[None]
        trained = tuple(self.model.visual.grid_size)
        if tuple(grid) == trained:
            return pos
        return resample_abs_pos_embed(pos, new_size=list(grid), old_size=list(trained), num_prefix_tokens=1)

    def project_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """``ln_post`` then the visual projection: tokens (..., D) -> the joint image-text space (..., C_out)."""
        visual = self.model.visual
        return visual.ln_post(tokens) @ visual.proj

    def _embed(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """CLS + patch embeddings with position embeddings (N, 1 + h*w, D), before ``ln_pre``, and the grid."""
        visual = self.model.visual
        x = visual.conv1(self.normalize(images).to(visual.conv1.weight.dtype))
        grid = (x.shape[-2], x.shape[-1])
        x = x.flatten(2).transpose(1, 2)
        x = torch.cat([visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1), x], dim=1)
        return x + self.pos_embed(grid).to(x.dtype), grid

    def encode_windows(self, images: torch.Tensor, windows: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
        """Projected image embeddings (N, W, output_dim) of the vision tower run on each window alone.

        ``windows`` (W, k) holds flat patch indices (row-major on the patch grid); each window's
        sequence is the CLS token plus its k patch tokens, with their position embeddings, through every
        block, then ``ln_post`` and the projection of the CLS output (WinCLIP's window embeddings).
        ``chunk`` bounds the sequences run at once.
        """
        visual = self.model.visual
        with self.autocast(images.device):
            x, _ = self._embed(images)
            index = torch.cat([windows.new_zeros(windows.shape[0], 1), windows + 1], dim=1).to(x.device)
            seqs = x[:, index].flatten(0, 1)  # (N * W, 1 + k, D)
            out = []
            for part in seqs.split(chunk):
                part = visual.ln_pre(part)
                for block in visual.transformer.resblocks:
                    part = block(part)
                out.append(self.project_tokens(part[:, 0]))
            pooled = torch.cat(out).float()
        return pooled.unflatten(0, (images.shape[0], windows.shape[0]))

    def forward_tokens(
        self,
        images: torch.Tensor,
        layers: Sequence[int],
        *,
        norm: bool = False,
        project: bool = False,
        vv_blocks: int = 0,
        with_attention: bool = False,
        cls: bool = True,
    ) -> Tokens:
        """Patch tokens (N, h, w, C) of ``layers`` for images in [0, 1] of any size.

        ``norm`` applies ``ln_post``; ``project`` applies ``ln_post`` and the projection (C = output_dim,
        the space of the text features). ``vv_blocks > 0`` also runs the V-V attention path in the last
        ``vv_blocks`` blocks (CLIP Surgery / AnomalyCLIP DPAM: the V-V stream starts from the block
        input, adds each block's V-V self-attention of the original stream, skips the MLP);
        ``Tokens.vv[layer]`` then holds its tokens for tapped layers inside that range (AnomalyCLIP's
        ``DPAM_layer=d`` is ``vv_blocks=d-1``: its ``DAPM_replace`` replaces ``resblocks[-i]`` for i in
        ``range(1, d)``, so the default 20 covers blocks 6..24 of 24, ``vv_blocks=19``). ``with_attention`` fills ``Tokens.attention`` with the
        last block's CLS-to-patch attention. ``cls=False`` stops after the deepest block needed.
        """
        taps = self.layer_indices(layers)
        visual = self.model.visual
        if not 0 <= vv_blocks <= self.num_blocks:
            raise ValueError(f"vv_blocks must be in 0..{self.num_blocks}, got {vv_blocks}")
        vv_start = self.num_blocks - vv_blocks + 1 if vv_blocks else self.num_blocks + 1
        depth = self.num_blocks if (cls or with_attention) else max(taps.values(), default=0)
        device = images.device
        with self.autocast(device):
            x, grid = self._embed(images)
            x = visual.ln_pre(visual.patch_dropout(x))
            stream: dict[int, torch.Tensor] = {}
            vv_stream: dict[int, torch.Tensor] = {}
            attention = None
            vv = None
            for i, block in enumerate(visual.transformer.resblocks[:depth], start=1):
                want_attention = with_attention and i == self.num_blocks
                if i >= vv_start or want_attention:  # one q/k/v projection serves both
                    q, k, v = _qkv(block, x)
                if i >= vv_start:
                    vv_out = block.attn.out_proj(_merge_heads(F.scaled_dot_product_attention(v, v, v)))
                    vv = (x if vv is None else vv) + vv_out
                if want_attention:
                    weights = (q[:, :, :1] @ k.transpose(-2, -1) * q.shape[-1] ** -0.5).softmax(dim=-1)
                    attention = weights[:, :, 0, 1:].mean(dim=1).float().unflatten(1, grid)
                x = block(x)
                if i in taps.values():
                    stream[i] = x
                    if vv is not None:
                        vv_stream[i] = vv
            pooled = self.project_tokens(x[:, 0]).float() if depth == self.num_blocks and cls else None

            def finish(t: torch.Tensor) -> torch.Tensor:
                t = t[:, 1:]
                if project:
                    t = self.project_tokens(t)
                elif norm:
                    t = visual.ln_post(t)
                return t.float().unflatten(1, grid)

            patches = {layer: finish(stream[block]) for layer, block in taps.items()}
            vv_patches = {
                layer: finish(vv_stream[block]) for layer, block in taps.items() if block in vv_stream
            }
        return Tokens(patches=patches, cls=pooled, grid=grid, vv=vv_patches, attention=attention)

    def cls_attention(self, images: torch.Tensor) -> torch.Tensor:
        """Last block's CLS-to-patch attention averaged over heads, (N, h, w)."""
        tokens = self.forward_tokens(images, [], with_attention=True, cls=False)
        assert tokens.attention is not None
        return tokens.attention

    # --- text ------------------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """open_clip BPE token ids (T, context_length), on the backbone's device."""
        return self.tokenizer(list(texts)).to(self.device)

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Projected end-of-text features (T, output_dim), not normalised."""
        tokens = self.tokenize(texts)
        return self.encode_text_embeddings(self.token_embedding(tokens), tokens.argmax(dim=-1))

    def encode_text_embeddings(
        self,
        embeddings: torch.Tensor,
        eot_indices: torch.Tensor,
        deep_prompts: Sequence[torch.Tensor] = (),
    ) -> torch.Tensor:
        """Run the text tower on token embeddings (T, L, D) -> projected features (T, output_dim).

        Learnable context vectors can be spliced into ``embeddings``; ``eot_indices`` (T,) says where
        each sequence's end-of-text token now sits. ``deep_prompts[j]`` ((n, D) or (T, n, D)), if given,
        replaces the n tokens after the start token at the input of text block j + 2 (deep prompt
        tuning as AnomalyCLIP / MaPLe). Gradients flow to ``embeddings`` and the prompts.
        """
        length = embeddings.shape[1]
        x = embeddings + self.positional_embedding[:length].to(embeddings.dtype)
        mask = self.model.attn_mask
        mask = mask[:length, :length].to(x.dtype) if mask is not None else None
        for i, block in enumerate(self.text_transformer.resblocks):
            if 1 <= i <= len(deep_prompts):
                prompt = deep_prompts[i - 1].to(x.dtype)
                prompt = prompt.expand(x.shape[0], -1, -1) if prompt.dim() == 2 else prompt
                x = torch.cat([x[:, :1], prompt, x[:, 1 + prompt.shape[1] :]], dim=1)
            x = block(x, attn_mask=mask)
        x = self.ln_final(x)
        x = x[torch.arange(x.shape[0], device=x.device), eot_indices.to(x.device)]
        return x @ self.text_projection


@contextlib.contextmanager
def _quiet_random_init_warning() -> Iterator[None]:
    """open_clip logs 'No pretrained weights loaded' on the root logger for every weightless build; here
    the weights are loaded right after (or random init is deliberate and recorded as 'random')."""

    def keep(record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("No pretrained weights loaded")

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def create_open_clip(spec: BackboneSpec, source: WeightSource, **overrides: object) -> open_clip.CLIP:
    """Build the open_clip model of ``spec`` with the resolved weights (``overrides`` reach the model config).

    A local file carries no tag config, so QuickGELU is forced from the spec (OpenAI weights need it);
    OpenAI's TorchScript ``.pt`` archives are read with ``torch.jit.load`` and loaded strictly.
    """
    quick_gelu = bool(spec.kwargs.get("quick_gelu", False))
    if source.kind == "download":
        with download_failure_as_missing(spec):
            return open_clip.create_model(
                spec.model_name, pretrained=spec.pretrained, force_quick_gelu=quick_gelu, **overrides
            )
    with _quiet_random_init_warning():
        model = open_clip.create_model(
            spec.model_name, pretrained=None, force_quick_gelu=quick_gelu, **overrides
        )
    if source.path is None:
        return model
    if is_torchscript(source.path):
        # open_clip's own cached OpenAI download is trusted; a user's file needs --trust-weights
        model.load_state_dict(load_state_dict_file(source.path, trusted=source.kind == "cache"), strict=True)
    else:  # open_clip's loader: safetensors or weights_only torch.load, plus its key conversions
        open_clip.load_checkpoint(model, str(source.path), strict=True, weights_only=True)
    return model


def build_open_clip(spec: BackboneSpec, source: WeightSource, **overrides: object) -> OpenCLIPBackbone:
    """Builder for the open_clip specs (``spec.model_name`` + ``spec.pretrained`` tag; ``overrides``
    reach the model config, as for tiny-clip)."""
    model = create_open_clip(spec, source, **overrides)
    tokenizer = open_clip.get_tokenizer(spec.model_name, context_length=model.context_length)
    return OpenCLIPBackbone(spec.name, model, tokenizer)
