"""Train a model on Mini-World with TRL's GRPOTrainer: copy this file, change the model and steps.

    .venv/bin/python examples/trl_grpo.py --model tiny --steps 2            # seconds of training, CPU (CI runs this)
    .venv/bin/python examples/trl_grpo.py --model smollm2-135m --steps 50   # the default model
    .venv/bin/python examples/trl_grpo.py --model Qwen/Qwen2.5-Coder-0.5B-Instruct --device cuda --steps 200
    .venv/bin/python examples/trl_grpo.py --model tiny --steps 2 --turns 2  # self-correction (COCOS reward)

``grpo_setup`` starts the sandbox (and Spark), loads the suite's verified tasks, and builds the
dataset and the reward; ``trainer.train()`` must run inside its ``with`` block, because the reward
runs every completion's code in that sandbox. The reward logs the share of each outcome
(``miniworld/outcome/correct``, ``.../syntax_error``...) into TRL's logs. See docs/TRL.md.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile

from trl import GRPOConfig, GRPOTrainer

from cosmocore.model.policy import Policy
from miniworld.trl_multiturn import SelfCorrection
from miniworld.trl_reward import grpo_setup


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m", help="smollm2-135m, tiny, or a Hugging Face id / local path")
    parser.add_argument("--suite", default="smoke", help="Mini-World suite (tasks/NAME.yaml or a path)")
    parser.add_argument("--steps", type=int, default=2, help="GRPO optimizer steps")
    parser.add_argument("--generations", type=int, default=2, help="completions per prompt (GRPO's group size)")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="generation budget per completion")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (TRL's use_cpu follows it)")
    parser.add_argument("--out", default=None, help="output directory (default: a temporary one)")
    parser.add_argument("--turns", type=int, choices=(1, 2), default=1,
                        help="2: a second attempt with the sandbox's feedback, rewarded gamma*r1 + (r2 - r1) (COCOS)")
    parser.add_argument("--gamma", type=float, default=0.5, help="COCOS's weight of the first attempt's reward")
    parser.add_argument("--spark-remote", default=None, help="a Spark Connect server (sc://host:port)")
    args = parser.parse_args(argv)

    out = args.out or tempfile.mkdtemp(prefix="trl-grpo-")
    # CosmoCore's loader resolves the offline names (tiny, smollm2-135m); saved as a local folder,
    # TRL loads the policy and, for the KL term (beta > 0), its reference copy from the same files.
    policy = Policy.load(args.model, device="cpu", seed=0)
    model_dir = f"{out}/initial-model"
    policy.model.save_pretrained(model_dir)
    policy.tokenizer.save_pretrained(model_dir)
    config = GRPOConfig(
        output_dir=out,
        max_steps=args.steps,
        per_device_train_batch_size=args.generations,  # one prompt's group per step
        num_generations=args.generations,
        max_completion_length=args.max_new_tokens,
        learning_rate=1e-5,
        beta=0.01,  # KL to the reference, as COCOS
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        use_cpu=args.device == "cpu",  # the flag is use_cpu (no_cuda is gone)
        bf16=False,
        seed=0,
    )
    with grpo_setup(args.suite, split="train", spark_remote=args.spark_remote) as mw:
        if args.turns == 2:  # TRL's rollout_func (experimental): turn 1, feedback, turn 2 (trained)
            turns = SelfCorrection(mw, gamma=args.gamma)
            trainer = GRPOTrainer(model=model_dir, reward_funcs=[turns.reward], args=config, train_dataset=mw.dataset,
                                  rollout_func=turns.rollout)
        else:
            trainer = GRPOTrainer(model=model_dir, reward_funcs=[mw.reward], args=config, train_dataset=mw.dataset)
        trainer.train()  # inside the with block: the reward needs the open sandbox
    logged = [row for row in trainer.state.log_history if "reward" in row]
    summary = {"steps": trainer.state.global_step, "model": args.model, "suite": args.suite, "out": out, "turns": args.turns,
               "last": {k: v for k, v in logged[-1].items() if k == "reward" or k.startswith("miniworld/")} if logged else {}}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
