"""Measure the sanitizer on the committed prompt sets.

    python -m worldengine.sanitize.evaluate [--strictness standard] [--show-failures]
        [--redteam tests/data/redteam_prompts.jsonl] [--benign tests/data/benign_prompts.jsonl]

Catch rate: red-team prompts that were flagged *and* whose output is clean on a second pass.
False-rewrite rate: benign prompts that were flagged (enrichment of short prompts is allowed).
Both are reported overall and per split ("dev" was used while writing the term lists,
"holdout" was not), per category and per evasion variant.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

from worldengine.sanitize import Strictness, detect, sanitize, warm_up

DATA = Path(__file__).resolve().parents[2] / "tests" / "data"
CATCH_TARGET = 0.95
FALSE_REWRITE_TARGET = 0.05


def load_jsonl(path: Path) -> list[dict]:
    with Path(path).open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _rate(groups: dict[str, list[bool]]) -> dict[str, dict]:
    return {k: {"n": len(v), "rate": sum(v) / len(v)} for k, v in sorted(groups.items())}


def evaluate(redteam: list[dict], benign: list[dict],
             strictness: str = Strictness.STANDARD.value) -> dict:
    """Rates and failures; ``timing_ms`` is informational only."""
    caught, by_split, by_cat, by_variant, misses = [], defaultdict(list), defaultdict(list), \
        defaultdict(list), []
    by_lang, ben_lang, ben_variant = defaultdict(list), defaultdict(list), defaultdict(list)
    times = []  # CPU time of this thread: wall time on a shared machine measures its load
    for row in redteam:
        start = time.thread_time()
        result = sanitize(row["text"], strictness)
        times.append(time.thread_time() - start)
        ok = bool(result.categories) and not detect(result.text, strictness).unsafe
        caught.append(ok)
        by_split[row.get("split", "all")].append(ok)
        by_cat[row["category"]].append(ok)
        by_variant[row["variant"].split("+")[-1]].append(ok)
        by_lang[row.get("lang", "en")].append(ok)
        if not ok:
            misses.append({"text": row["text"], "category": row["category"],
                           "variant": row["variant"], "split": row.get("split"),
                           "output": result.text, "found": list(result.categories)})
    false_rewrites, ben_split, false_rows = [], defaultdict(list), []
    for row in benign:
        start = time.thread_time()
        result = sanitize(row["text"], strictness)
        times.append(time.thread_time() - start)
        bad = bool(result.categories)
        false_rewrites.append(bad)
        ben_split[row.get("split", "all")].append(bad)
        ben_lang[row.get("lang", "en")].append(bad)
        ben_variant[row.get("variant", "plain")].append(bad)
        if bad:
            false_rows.append({"text": row["text"], "split": row.get("split"),
                               "output": result.text, "found": list(result.categories),
                               "matches": [m["term"] for m in result.report["matches"]]})
    times.sort()
    return {
        "strictness": strictness,
        "catch_rate": sum(caught) / max(len(caught), 1),
        "false_rewrite_rate": sum(false_rewrites) / max(len(false_rewrites), 1),
        "n_redteam": len(caught), "n_benign": len(false_rewrites),
        "catch_by_split": _rate(by_split), "catch_by_category": _rate(by_cat),
        "catch_by_variant": _rate(by_variant), "false_rewrite_by_split": _rate(ben_split),
        "catch_by_language": _rate(by_lang), "false_rewrite_by_language": _rate(ben_lang),
        "false_rewrite_by_variant": _rate(ben_variant),
        "timing_ms": {"mean": 1000 * sum(times) / max(len(times), 1),
                      "p99": 1000 * times[int(0.99 * (len(times) - 1))] if times else 0.0,
                      "max": 1000 * times[-1] if times else 0.0},
        "misses": misses, "false_rewrites": false_rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redteam", type=Path, default=DATA / "redteam_prompts.jsonl")
    parser.add_argument("--benign", type=Path, default=DATA / "benign_prompts.jsonl")
    parser.add_argument("--strictness", default=Strictness.STANDARD.value,
                        choices=[s.value for s in Strictness])
    parser.add_argument("--show-failures", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    args = parser.parse_args(argv)
    warm_up()
    res = evaluate(load_jsonl(args.redteam), load_jsonl(args.benign), args.strictness)
    if args.json:
        print(json.dumps(res, indent=1, ensure_ascii=False))
        return 0
    print(f"strictness {res['strictness']}: catch rate {res['catch_rate']:.1%} "
          f"(n={res['n_redteam']}, target >= {CATCH_TARGET:.0%}), false-rewrite rate "
          f"{res['false_rewrite_rate']:.1%} (n={res['n_benign']}, target <= "
          f"{FALSE_REWRITE_TARGET:.0%})")
    for title, key in (("catch by split", "catch_by_split"),
                       ("false rewrites by split", "false_rewrite_by_split"),
                       ("catch by category", "catch_by_category"),
                       ("catch by variant", "catch_by_variant"),
                       ("catch by language", "catch_by_language"),
                       ("false rewrites by language", "false_rewrite_by_language"),
                       ("false rewrites by variant", "false_rewrite_by_variant")):
        print(f"{title}: " + ", ".join(f"{k} {v['rate']:.1%} ({v['n']})"
                                       for k, v in res[key].items()))
    t = res["timing_ms"]
    print(f"CPU time per prompt: mean {t['mean']:.2f} ms, p99 {t['p99']:.2f} ms, max {t['max']:.2f} ms")
    if args.show_failures:
        for miss in res["misses"]:
            print("MISS", json.dumps(miss, ensure_ascii=False))
        for row in res["false_rewrites"]:
            print("FALSE", json.dumps(row, ensure_ascii=False))
    ok = res["catch_rate"] >= CATCH_TARGET and res["false_rewrite_rate"] <= FALSE_REWRITE_TARGET
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
