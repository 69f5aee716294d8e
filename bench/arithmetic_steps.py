"""Which arithmetic facts a model knows: teacher-forced accuracy of each worked step's result.

    python bench/arithmetic_steps.py CKPT [CKPT ...] --data SFT_DATA/test.jsonl [--limit 500]

For each word problem of SFT_DATA/test.jsonl (`refinery synth sft`), the gold solution is fed
after the rendered prompt, and for every step `a op b = c` the model's argmax is read at each
token of `c`: the step counts as known when every token of `c` is predicted. Rows per operation,
with additions and subtractions also split by whether a carry (borrow) crosses the units digit.
A word problem is solved only if each of its steps is, so these rows bound the task's accuracy,
and they show which facts a reward model built on the same backbone cannot check either.
"""

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from corpus.tokenizer import load as load_tokenizer  # noqa: E402
from training.chat import ChatTokens, render_for_generation  # noqa: E402
from training.checkpoint import load_model, resolve_checkpoint  # noqa: E402
from training.tasks import STEP  # noqa: E402


def kind(a: int, op: str, b: int) -> str:
    if op == "+":
        return "+ carry" if a % 10 + b % 10 >= 10 else "+ no carry"
    if op == "-":
        return "- borrow" if a % 10 < b % 10 else "- no borrow"
    return op


@torch.no_grad()
def step_accuracy(path: Path, problems: list[dict]) -> Counter:
    tok = load_tokenizer(path / "tokenizer.json")
    chat, model = ChatTokens(tok), load_model(path)
    counts: Counter = Counter()
    for p in problems:
        prompt = render_for_generation([{"role": "user", "content": p["prompt"]}], chat)
        enc = tok.encode(p["solution"])
        ids = torch.tensor([prompt + enc.ids])
        predicted = model(ids[:, :-1])[0].argmax(-1).tolist()
        for m in STEP.finditer(p["solution"]):
            start, end = m.span(7)
            tokens = [i for i, (a, b) in enumerate(enc.offsets) if a < end and b > start]
            known = all(predicted[len(prompt) + i - 1] == enc.ids[i] for i in tokens)
            for row in {m[3], kind(int(m[2]), m[3], int(m[5]))}:
                counts[row, "steps"] += 1
                counts[row, "known"] += known
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--data", required=True, help="test.jsonl of `refinery synth sft`")
    parser.add_argument("--limit", type=int, default=500, help="first N word problems")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [json.loads(line) for line in open(args.data)]
    problems = [r for r in rows if r["task"] == "arithmetic"][: args.limit]
    results = {name: step_accuracy(resolve_checkpoint(name), problems) for name in args.checkpoints}
    order = ["+", "+ no carry", "+ carry", "-", "- no borrow", "- borrow", "*", "/"]
    print(f"{'step':<13}{'n':>6}" + "".join(f"{Path(n).name[-22:]:>24}" for n in results))
    for row in order:
        n = next(iter(results.values()))[row, "steps"]
        if n:
            print(f"{row:<13}{n:>6}" + "".join(f"{c[row, 'known'] / n:>24.3f}" for c in results.values()))


if __name__ == "__main__":
    main()
