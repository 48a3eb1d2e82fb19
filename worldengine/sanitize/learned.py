"""A small learned prompt classifier: the stage after the term lists that generalises beyond them.

Features (``features``): the prompt normalised as the lexicon sees it (``clean_text``, leet and
homoglyphs folded, s p a c e d letters joined), then hashed (CRC32, ``BUCKETS`` buckets) word
unigrams and bigrams, character 2..5-grams of each word (1..3-grams inside CJK runs), and word
shapes (capitalised pairs hint at names; odd casing counts as lower case). Model: an embedding
bag (mean of the feature rows, float16 ``[BUCKETS, HIDDEN]``) -> ReLU -> linear to ``LABELS``
-> softmax. Trained offline by ``tools/safety/train_classifier.py`` on a generated multilingual,
evasion-augmented corpus; the weights ship as ``data/prompt_classifier.safetensors`` and load
via safetensors only. Deterministic numpy on the CPU (~0.2-1 ms per prompt).
"""

from __future__ import annotations

import functools
import itertools
import re
import zlib
from dataclasses import dataclass

import numpy as np

from worldengine.errors import WaypointError
from worldengine.sanitize.lexicon import DATA_DIR
from worldengine.sanitize.normalize import canonical, clean_text, tokenize

LABELS = ("safe", "sexual", "minors", "celebrity", "branded_ip")
BUCKETS = 1 << 15
HIDDEN = 32
WEIGHTS = DATA_DIR / "prompt_classifier.safetensors"
MAX_FEATURE_CHARS = 2000  # a prompt's head is enough; keeps the cost bounded
_CJK = re.compile("[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")


def _shape(raw: str) -> str:
    letters = [c for c in raw if c.isalpha()]
    if not letters or _CJK.search(raw):
        return "o"
    if all(c.isupper() for c in letters):
        return "U" if len(letters) > 1 else "C"
    if letters[0].isupper() and all(c.islower() for c in letters[1:]):
        return "C"
    if not any(c.isupper() for c in letters) or _odd_case(letters):
        return "l"  # aLtErNaTiNg case is an evasion: the word's shape is its plain one (v14)
    return "m"


def _odd_case(letters: list[str]) -> bool:
    """Case flips on at least half of the letter pairs ("oMa", "fRiSkY"; not "McDonald")."""
    flips = sum(a.isupper() != b.isupper() for a, b in itertools.pairwise(letters))
    return len(letters) > 2 and flips >= 2 and 2 * flips >= len(letters) - 1


def words(text: str) -> list[tuple[str, str, int, int]]:
    """(canonical word, shape, start, end) per token of ``clean_text(text)`` (spans index that
    clean text); runs of >= 3 single characters are joined into one word ("s e x")."""
    out: list[tuple[str, str, int, int]] = []
    run: list = []

    def flush() -> None:
        if len(run) >= 3:
            out.append(("".join(w for w, _, _ in run), "o", run[0][1], run[-1][2]))
        else:
            out.extend((w, "l", s, e) for w, s, e in run)
        run.clear()

    for tok in tokenize(clean_text(text[:MAX_FEATURE_CHARS])):
        word = canonical(tok.raw)
        if not word:
            continue
        if len(word) == 1 and not _CJK.match(word) or len(word) == 1 and run:
            run.append((word, tok.start, tok.end))
            continue
        flush()
        out.append((word, _shape(tok.raw), tok.start, tok.end))
    flush()
    return out


def _grams(word: str) -> list[str]:
    if _CJK.search(word):
        return [word[i:i + n] for n in (1, 2, 3) for i in range(len(word) - n + 1)]
    padded = f"<{word}>"
    return [padded[i:i + n] for n in (2, 3, 4, 5) for i in range(len(padded) - n + 1)]


def owned_features(ws: list[tuple]) -> list[tuple[str, tuple[int, ...]]]:
    """(feature string, indices of the words it comes from) for ``words()`` output."""
    feats = [("w:" + w[0], (i,)) for i, w in enumerate(ws)]
    pairs = list(enumerate(itertools.pairwise(ws)))
    feats += [(f"b:{a[0]}|{b[0]}", (i, i + 1)) for i, (a, b) in pairs]
    feats += [(f"s:{a[1]}{b[1]}", (i, i + 1)) for i, (a, b) in pairs]
    for i, w in enumerate(ws):
        feats += [("c:" + g, (i,)) for g in _grams(w[0])]
    return feats


def feature_strings(text: str) -> list[str]:
    """The feature strings of one prompt (before hashing)."""
    return [f for f, _ in owned_features(words(text))] or ["<empty>"]


def _hash(feats) -> np.ndarray:
    return np.fromiter((zlib.crc32(f.encode("utf-8")) % BUCKETS for f in feats), dtype=np.int64)


def features(text: str) -> np.ndarray:
    """int64 bucket indices ``[F]`` (with repeats) of one prompt."""
    return _hash(feature_strings(text))


@dataclass(frozen=True)
class Prediction:
    label: str          # most likely of ``LABELS``
    unsafe_prob: float  # 1 - p(safe), 0..1
    probs: dict


class PromptClassifier:
    """float32 numpy forward of the shipped weights (``embed`` [BUCKETS, HIDDEN] f16, ``b1``
    [HIDDEN], ``w2`` [HIDDEN, len(LABELS)], ``b2`` [len(LABELS)])."""

    def __init__(self, tensors: dict[str, np.ndarray]):
        try:
            self.embed = tensors["embed"].astype(np.float32)  # f16 on disk, f32 to compute
            self.b1 = tensors["b1"].astype(np.float32)
            self.w2 = tensors["w2"].astype(np.float32)
            self.b2 = tensors["b2"].astype(np.float32)
        except KeyError as exc:
            raise WaypointError(f"prompt classifier weights lack tensor {exc}") from None
        if self.embed.shape != (BUCKETS, HIDDEN) or self.w2.shape != (HIDDEN, len(LABELS)):
            raise WaypointError(f"prompt classifier weights have shapes {self.embed.shape}, "
                                f"{self.w2.shape}; expected ({BUCKETS}, {HIDDEN}), "
                                f"({HIDDEN}, {len(LABELS)})")

    def _probs(self, means: np.ndarray) -> np.ndarray:
        z = np.maximum(means + self.b1, 0.0) @ self.w2 + self.b2
        p = np.exp(z - z.max(axis=-1, keepdims=True))
        return p / p.sum(axis=-1, keepdims=True)

    @functools.lru_cache(maxsize=512)  # noqa: B019 (one shared instance; sanitize() re-checks texts)
    def predict(self, text: str) -> Prediction:
        p = self._probs(self.embed[features(text)].mean(axis=0))
        k = int(p.argmax())
        return Prediction(LABELS[k], float(1.0 - p[0]), {lab: float(v) for lab, v in zip(LABELS, p)})

    def word_effects(self, clean: str, dropped: frozenset[int] = frozenset()
                     ) -> tuple[list[tuple[int, int]], np.ndarray]:
        """Spans of the words of ``clean`` (a ``clean_text`` string) and, per word, the
        unsafe probability (1 - p(safe)) of the prompt without that word and without the
        words in ``dropped``: float32 [W] (dropped words get 1.0)."""
        ws = words(clean)
        owned = [(f, o) for f, o in owned_features(ws) if not dropped.intersection(o)]
        if not owned:
            return [(w[2], w[3]) for w in ws], np.zeros(len(ws), np.float32)
        rows = self.embed[_hash(f for f, _ in owned)]
        own = np.zeros((len(ws), len(owned)), np.float32)  # word x feature ownership
        pairs = [(i, k) for k, (_, owners) in enumerate(owned) for i in owners]
        own[tuple(np.array(pairs).T)] = 1.0
        removed, count = own @ rows, own.sum(axis=1)
        means = (rows.sum(axis=0) - removed) / np.maximum(len(owned) - count, 1.0)[:, None]
        effects = 1.0 - self._probs(means)[:, 0]
        effects[list(dropped)] = 1.0
        return [(w[2], w[3]) for w in ws], effects


@functools.lru_cache(maxsize=1)
def get_classifier() -> PromptClassifier | None:
    """The shipped classifier, or None when its weights file is absent (term lists only)."""
    if not WEIGHTS.exists():
        return None
    from safetensors.numpy import load_file
    return PromptClassifier(load_file(str(WEIGHTS)))
