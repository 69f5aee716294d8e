"""`refinery train ...` and `refinery export ...`: torch is imported inside the commands only."""

import argparse
import logging
import os


def _pretrain(args: argparse.Namespace) -> None:
    from training.config import load_pretrain_config
    from training.pretrain import pretrain

    cfg = load_pretrain_config(args.config, {"init": args.init} if args.init else None)
    result = pretrain(
        cfg, args.shards, args.out, tokenizer_path=args.tokenizer, resume=args.resume, quiet=args.quiet
    )
    if os.environ.get("RANK", "0") == "0":  # torchrun: one summary, from rank 0
        logging.getLogger("training").info(
            "done: step %d, %d tokens, train loss %.4f, val loss %.4f, val bpb %.4f",
            result["step"],
            result["tokens"],
            result["train_loss"],
            result.get("val_loss", float("nan")),
            result.get("val_bpb", float("nan")),
        )


def _sft(args: argparse.Namespace) -> None:
    from corpus.yaml_config import load_yaml
    from training.config import SftConfig
    from training.sft import sft

    overrides = {"lora_rank": args.lora_rank} if args.lora_rank is not None else {}
    if args.lora_embeddings:
        overrides["lora_embeddings"] = True
    cfg = load_yaml(args.config, SftConfig, overrides)
    result = sft(cfg, args.init, args.data, args.out, resume=args.resume, quiet=args.quiet)
    if os.environ.get("RANK", "0") == "0":
        figures = ", ".join(f"{k} {v:.4f}" for k, v in result.items() if k.startswith("val_"))
        logging.getLogger("training").info(
            "done: step %d, train loss %.4f, %s", result["step"], result["train_loss"], figures
        )


def _reward(args: argparse.Namespace) -> None:
    from corpus.yaml_config import load_yaml
    from training.config import RewardConfig
    from training.reward import train_reward

    cfg = load_yaml(args.config, RewardConfig)
    result = train_reward(cfg, args.init, args.data, args.out, resume=args.resume, quiet=args.quiet)
    if os.environ.get("RANK", "0") == "0":
        figures = ", ".join(f"{k} {v:.4f}" for k, v in result.items() if k.startswith("val_"))
        logging.getLogger("training").info("done: step %d, %s", result["step"], figures)


def _align(args: argparse.Namespace) -> None:
    from corpus.yaml_config import load_yaml
    from training.align import CONFIGS, align

    cfg = load_yaml(args.config or f"conf/train/{args.method}.yaml", CONFIGS[args.method])
    result = align(
        args.method,
        cfg,
        args.init,
        args.data,
        args.out,
        reward=args.reward,
        pairs=args.pairs,
        resume=args.resume,
        quiet=args.quiet,
    )
    figures = ", ".join(f"{k} {v:.4f}" for k, v in result.items() if k.startswith("val_"))
    logging.getLogger("training").info("done: step %d, %s", result["step"], figures)


def _rounds(args: argparse.Namespace) -> None:
    from corpus.yaml_config import load_yaml
    from training.config import RoundsConfig
    from training.rounds import format_table, rounds

    cfg = load_yaml(args.config, RoundsConfig)
    table = rounds(cfg, args.init, args.data, args.out, pairs=args.pairs, quiet=args.quiet)
    print(format_table(table))


def _eval_compare(args: argparse.Namespace) -> None:
    from training.align import compare, format_compare

    results = compare(
        args.checkpoints,
        args.data,
        ref=args.ref,
        reward=args.reward,
        limit=args.limit,
        max_new_tokens=args.max_new_tokens,
    )
    print(format_compare(results))
    if args.out:
        from corpus.manifest import write_json_atomic

        meta = {"data": str(args.data), "ref": args.ref, "reward": args.reward, "limit": args.limit}
        write_json_atomic(args.out, {**meta, "figures": results})
        print(f"wrote {args.out}")


def _eval_tasks(args: argparse.Namespace) -> None:
    from corpus.tokenizer import load as load_tokenizer
    from training.chat import ChatTokens
    from training.checkpoint import load_model, resolve_checkpoint
    from training.eval_tasks import evaluation_record, format_table, read_problems, task_correctness
    from training.significance import comparison_lines

    problems = read_problems(args.data, limit=args.limit)
    correct = {}
    for name in args.checkpoints:
        path = resolve_checkpoint(name)
        chat = ChatTokens(load_tokenizer(path / "tokenizer.json"))
        correct[name] = task_correctness(
            load_model(path), chat, problems, args.max_new_tokens, tools=args.tools
        )
    record = evaluation_record(problems, correct) | {"tools": args.tools}
    print(format_table(record["accuracy"], record["problems"], record["majority"]))
    for line in comparison_lines(record["comparisons"]):
        print(line)
    if args.out:
        from corpus.manifest import write_json_atomic

        write_json_atomic(args.out, {"data": str(args.data), **record})
        print(f"wrote {args.out}")


def _eval_factuality(args: argparse.Namespace) -> None:
    from corpus.manifest import read_json
    from corpus.tokenizer import load as load_tokenizer
    from training.chat import ChatTokens
    from training.checkpoint import load_model
    from training.eval_tasks import read_problems
    from training.factuality import factuality_rates, format_rates
    from training.sft import resolve_checkpoint

    refusal = read_json(f"{args.data}/report.json")["config"]["refusal"]
    problems = read_problems(f"{args.data}/test.jsonl", limit=args.limit)
    results = {}
    for name in args.checkpoints:
        path = resolve_checkpoint(name)
        chat = ChatTokens(load_tokenizer(path / "tokenizer.json"))
        results[name] = factuality_rates(load_model(path), chat, problems, refusal, args.max_new_tokens)
    print(format_rates(results))
    if args.out:
        from corpus.manifest import write_json_atomic

        write_json_atomic(args.out, {"data": str(args.data), "questions": len(problems), "rates": results})


def _export_hf(args: argparse.Namespace) -> None:
    from training.export import export_hf

    export_hf(args.checkpoint, args.out)
    logging.getLogger("training").info("wrote %s", args.out)


def add_commands(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train", help="train models on a run's shards")
    phases = train.add_subparsers(dest="phase", required=True)
    pre = phases.add_parser(
        "pretrain",
        help="pretrain a GPT on RUN/shards (several processes: torchrun --nproc_per_node N -m jobs.cli ...)",
    )
    pre.add_argument("--config", required=True, help="YAML config, e.g. conf/train/pretrain.yaml")
    pre.add_argument("--shards", required=True, help="shards directory with manifest.json (RUN/shards)")
    pre.add_argument("--out", required=True, help="output directory (checkpoints, metrics.jsonl, loss.png)")
    pre.add_argument(
        "--tokenizer", help="tokenizer.json (default: RUN/tokenizer/tokenizer.json beside the shards)"
    )
    pre.add_argument(
        "--init",
        help="continued pretraining: start from this checkpoint's weights (or a training --out's latest)"
        " with a fresh optimizer and schedule; the config may raise model.context_length and rope_theta",
    )
    pre.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    pre.add_argument("--quiet", action="store_true", help="no progress bar, only evaluation log lines")
    pre.set_defaults(func=_pretrain)

    sft = phases.add_parser("sft", help="supervised fine-tuning of a checkpoint on `refinery synth sft` data")
    sft.add_argument("--config", default="conf/train/sft.yaml", help="YAML config (conf/train/sft.yaml)")
    sft.add_argument("--init", required=True, help="checkpoint to start from, or a training --out directory")
    sft.add_argument("--data", required=True, help="directory with train.jsonl and test.jsonl")
    sft.add_argument("--out", required=True, help="output directory (checkpoints, metrics.jsonl, loss.png)")
    sft.add_argument("--lora-rank", type=int, help="train rank-R LoRA adapters instead of all weights")
    sft.add_argument(
        "--lora-embeddings", action="store_true", help="adapt the token embedding and output layer too"
    )
    sft.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    sft.add_argument("--quiet", action="store_true", help="no progress bar, only evaluation log lines")
    sft.set_defaults(func=_sft)

    reward = phases.add_parser("reward", help="reward model on `refinery synth preferences` pairs")
    reward.add_argument(
        "--config", default="conf/train/reward.yaml", help="YAML config (conf/train/reward.yaml)"
    )
    reward.add_argument(
        "--init", required=True, help="checkpoint whose GPT becomes the backbone (the SFT model)"
    )
    reward.add_argument("--data", required=True, help="preference directory with train.jsonl and test.jsonl")
    reward.add_argument(
        "--out", required=True, help="output directory (checkpoints, metrics.jsonl, loss.png)"
    )
    reward.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    reward.add_argument("--quiet", action="store_true", help="no progress bar, only evaluation log lines")
    reward.set_defaults(func=_reward)

    align = phases.add_parser(
        "align", help="align an SFT checkpoint: ppo, grpo, dpo, kto or rs (training/align.py)"
    )
    align.add_argument("--method", required=True, choices=("dpo", "grpo", "kto", "ppo", "rs"))
    align.add_argument("--config", help="YAML config (default: conf/train/METHOD.yaml)")
    align.add_argument("--init", required=True, help="the SFT checkpoint (policy start and frozen reference)")
    align.add_argument(
        "--data", required=True, help="`refinery synth sft` directory: train prompts, test problems"
    )
    align.add_argument(
        "--reward",
        help="reward-model checkpoint (ppo; rs unless require_correct; grpo with reward.reward_model > 0)",
    )
    align.add_argument("--pairs", help="`refinery synth preferences` directory (dpo, kto)")
    align.add_argument(
        "--out", required=True, help="output directory (checkpoints, metrics.jsonl, align.png)"
    )
    align.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    align.add_argument("--quiet", action="store_true", help="no progress bar, only evaluation log lines")
    align.set_defaults(func=_align)

    rounds = phases.add_parser(
        "rounds",
        help="iterative post-training from an SFT checkpoint: per round sample, grade, reward model, "
        "rejection sampling and DPO (training/rounds.py)",
    )
    rounds.add_argument("config", help="YAML config, e.g. conf/train/rounds.yaml")
    rounds.add_argument(
        "--init", required=True, help="the SFT checkpoint (round 1's policy, the KL reference)"
    )
    rounds.add_argument(
        "--data", required=True, help="`refinery synth sft` directory: train prompts, test problems"
    )
    rounds.add_argument(
        "--pairs", help="`refinery synth preferences` directory whose train pairs every reward model adds"
    )
    rounds.add_argument(
        "--out", required=True, help="output directory (round_<r>/, rounds.md); a rerun resumes there"
    )
    rounds.add_argument("--quiet", action="store_true", help="no progress bar, only evaluation log lines")
    rounds.set_defaults(func=_rounds)

    evaluation = sub.add_parser("eval", help="evaluate checkpoints").add_subparsers(
        dest="what", required=True
    )
    tasks = evaluation.add_parser("tasks", help="exact-match accuracy per task on a test split, greedy")
    tasks.add_argument(
        "checkpoints",
        nargs="+",
        help="checkpoints (or training directories) side by side; each is tested against the one before it",
    )
    tasks.add_argument("--data", required=True, help="test.jsonl of `refinery synth sft`")
    tasks.add_argument("--limit", type=int, help="first N problems of each task")
    tasks.add_argument("--max-new-tokens", type=int, default=128)
    tasks.add_argument(
        "--tools", action="store_true", help="run the models' Python tool calls (training/sandbox.py)"
    )
    tasks.add_argument("--out", help="write the results as JSON")
    tasks.set_defaults(func=_eval_tasks)

    comp = evaluation.add_parser(
        "compare", help="checkpoints side by side: accuracy, format rate, RM score, KL to SFT, length"
    )
    comp.add_argument("checkpoints", nargs="+", help="checkpoints (or training directories)")
    comp.add_argument("--data", required=True, help="test.jsonl of `refinery synth sft`")
    comp.add_argument("--ref", required=True, help="the reference for KL (the SFT checkpoint)")
    comp.add_argument("--reward", help="reward-model checkpoint for the mean score")
    comp.add_argument("--limit", type=int, help="first N problems of each task")
    comp.add_argument("--max-new-tokens", type=int, default=128)
    comp.add_argument("--out", help="write the figures as JSON")
    comp.set_defaults(func=_eval_compare)

    facts = evaluation.add_parser(
        "factuality", help="right, refused and wrong answers to held-out closed-book questions"
    )
    facts.add_argument("checkpoints", nargs="+", help="checkpoints (or training directories) side by side")
    facts.add_argument("--data", required=True, help="`refinery synth factuality` directory")
    facts.add_argument("--limit", type=int, help="the first N questions")
    facts.add_argument("--max-new-tokens", type=int, default=32)
    facts.add_argument("--out", help="write the rates as JSON")
    facts.set_defaults(func=_eval_factuality)

    export = sub.add_parser("export", help="convert a checkpoint for other libraries")
    formats = export.add_subparsers(dest="format", required=True)
    hf = formats.add_parser("hf", help="a transformers LlamaForCausalLM directory with its tokenizer")
    hf.add_argument("checkpoint", help="a checkpoint directory (OUT/checkpoints/step_N) or a training --out")
    hf.add_argument("out", help="output directory")
    hf.set_defaults(func=_export_hf)
