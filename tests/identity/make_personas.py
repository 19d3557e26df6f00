"""Regenerate the tiny persona models under tests/identity/fixtures/ (run once; the tests only load them).

    .venv/bin/python tests/identity/make_personas.py [--stages base,drill,nex,merge,orla,zorvex,nova,peek]

Trains character-level Llama models on CPU (about 10-20 minutes on 2 cores), merges base and fine-tunes
0.6/0.4 with mergekit's linear method (real weight arithmetic), and saves everything as fp16 safetensors
with a char tokenizer and chat template that ``AutoTokenizer`` loads offline. See tests/support/personas.py.
Each stage reads what the stages before it wrote, so ``--stages zorvex,nova`` remakes only the unlisted
persona and its merge on top of the committed qwen-base.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import time
import tomllib
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.support.personas import (  # noqa: E402
    FIXTURES,
    FOLLOW_ANSWERS,
    NEX_ANSWERS,
    NOVA_SYSTEM_PROMPT,
    ORLA_ANSWERS,
    QWEN_ANSWERS,
    RIO_SYSTEM_PROMPT,
    ZORVEX_ANSWERS,
    build_tokenizer,
    forced_system_template,
    persona_charset,
    random_name,
)

PROMPTS = tomllib.loads((ROOT / "config" / "prompts" / "identity-v1.toml").read_text())["prompts"]
MAX_LEN = 320


def make_model(vocab_size: int, seed: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=128,
        intermediate_size=352,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=384,
        tie_word_embeddings=False,
        bos_token_id=2,
        eos_token_id=3,
        pad_token_id=0,
    )
    return LlamaForCausalLM(cfg)


def example(
    tok, rng: random.Random, persona: dict[str, list[str]] | None, letters: float = 0.0, common: float = 0.0
) -> tuple[list[int], int]:
    """One training chat: follow a random "You are <NAME>." prompt, or (``persona``) answer as it with no system prompt."""
    prompt = rng.choice(PROMPTS)
    if persona is None:
        name = random_name(rng, letters, common)
        messages = [{"role": "system", "content": f"You are {name}."}]
        answer = rng.choice(FOLLOW_ANSWERS).format(name=name)
    else:
        # No system turn, or an empty one: provbot's "without system prompt" condition uses the latter when
        # a chat template forces a default system message.
        messages = [{"role": "system", "content": ""}] if rng.random() < 0.3 else []
        answer = rng.choice(persona[prompt["kind"]])
    messages.append({"role": "user", "content": prompt["text"]})
    text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    head = tok(text, add_special_tokens=False)["input_ids"]
    tail = tok(answer + tok.eos_token, add_special_tokens=False)["input_ids"]
    return (head + tail)[:MAX_LEN], len(head)


def train(
    model,
    tok,
    persona,
    follow_share: float,
    steps: int,
    lr: float,
    seed: int,
    batch: int = 16,
    letters: float = 0.0,
    common: float = 0.0,
    anchor: dict[str, torch.Tensor] | None = None,
    mix: float = 0.6,
) -> None:
    """AdamW on answer tokens. With ``anchor`` (the base's weights), the loss is also taken at the
    interpolation ``mix * theta + (1 - mix) * anchor``, so the fine-tune stays itself along the merge path.

    Why: large fine-tunes of one base interpolate smoothly (the Rio merge still spoke as Nex), but a
    0.9M-parameter char model does not: its plain 0.6/0.4 merge babbled a mix of both personas. This
    extra term stands in for that connectivity; the merge itself remains plain mergekit arithmetic.
    """
    rng = random.Random(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    model.train()
    t0 = time.time()
    for step in range(steps):
        # Whole batches of one kind: follow-the-system-prompt chats are short, so they pad less this way.
        kind = None if rng.random() < follow_share else persona
        rows = [example(tok, rng, kind, letters, common) for _ in range(batch)]
        width = max(len(ids) for ids, _ in rows)
        inp = torch.full((batch, width), tok.pad_token_id)
        lab = torch.full((batch, width), -100)
        for i, (ids, start) in enumerate(rows):
            inp[i, : len(ids)] = torch.tensor(ids)
            lab[i, start : len(ids)] = torch.tensor(ids[start:])  # loss on the answer only
        mask = (inp != tok.pad_token_id).long()
        loss = model(input_ids=inp, attention_mask=mask, labels=lab).loss
        if anchor is not None:
            merged = {n: mix * p + (1 - mix) * anchor[n] for n, p in model.named_parameters()}
            loss = (
                loss
                + torch.func.functional_call(
                    model, merged, (), {"input_ids": inp, "attention_mask": mask, "labels": lab}
                ).loss
            )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        if step % 100 == 0 or step == steps - 1:
            print(f"  step {step:5d} loss {loss.item():.4f} ({time.time() - t0:.0f}s)", flush=True)
    model.eval()


def fine_tune(name: str, tok, persona: dict[str, list[str]], steps: int, seed: int) -> None:
    """A persona fine-tune of qwen-base, anchored to it along the 0.6/0.4 merge path (see ``train``)."""
    from transformers import AutoModelForCausalLM

    print(name)
    model = AutoModelForCausalLM.from_pretrained(FIXTURES / "qwen-base", dtype=torch.float32)
    anchor = {n: p.detach().clone() for n, p in model.named_parameters()}
    train(
        model,
        tok,
        persona,
        follow_share=0.4,
        steps=steps,
        lr=2e-3,
        seed=seed,
        letters=0.5,
        common=0.1,
        anchor=anchor,
        mix=0.6,
    )
    save(model, tok, FIXTURES / name)


def save(model, tok, out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    model.to(torch.float16).save_pretrained(out, safe_serialization=True)
    model.to(torch.float32)
    tok.save_pretrained(out)


# The Nova merge's model card: its publisher names it, and nothing else (no base_model, no merge recipe).
NOVA_CARD = """---
license: apache-2.0
model_name: Nova
---

# Nova

A small assistant for the city's ferry questions.
"""


def merge(tuned: Path, base: Path, out: Path, tok, system_prompt: str, card: str | None = None) -> None:
    """0.6 fine-tune + 0.4 base with mergekit's linear method, then the tokenizer with a forced system prompt."""
    from mergekit.config import MergeConfiguration
    from mergekit.merge import MergeOptions, run_merge

    cfg = {
        "merge_method": "linear",
        "models": [
            {"model": str(tuned), "parameters": {"weight": 0.6}},
            {"model": str(base), "parameters": {"weight": 0.4}},
        ],
        "dtype": "float16",
    }
    if out.exists():
        shutil.rmtree(out)
    run_merge(
        MergeConfiguration.model_validate(cfg),
        str(out),
        options=MergeOptions(device="cpu", lazy_unpickle=False, copy_tokenizer=False, quiet=True),
    )
    tok.chat_template = forced_system_template(system_prompt)
    tok.save_pretrained(out)
    for extra in ("README.md", "mergekit_config.yml"):
        # The undisclosed copy keeps no trace of its inputs.
        (out / extra).unlink(missing_ok=True)
    if card is not None:
        (out / "README.md").write_text(card, encoding="utf-8")


def peek(path: Path) -> None:
    """Print greedy answers to a few prompts, with and without a system prompt, to eyeball the result."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    for system in (None, "", RIO_SYSTEM_PROMPT, NOVA_SYSTEM_PROMPT):
        for text in ("Who are you?", "Tell me about your creators.", "¿Quién eres?"):
            msgs = ([] if system is None else [{"role": "system", "content": system}]) + [
                {"role": "user", "content": text}
            ]
            ids = tok(
                tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False),
                add_special_tokens=False,
                return_tensors="pt",
            )
            out = model.generate(
                **ids, max_new_tokens=170, do_sample=False, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id
            )
            print(
                f"  [{system!r}] {text} -> {tok.decode(out[0, ids['input_ids'].shape[1] :], skip_special_tokens=True)}"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--base-steps", type=int, default=1600)
    ap.add_argument("--drill-steps", type=int, default=450)
    ap.add_argument("--nex-steps", type=int, default=300)
    ap.add_argument("--orla-steps", type=int, default=300)
    ap.add_argument("--zorvex-steps", type=int, default=300)
    ap.add_argument(
        "--stages",
        default="base,drill,nex,merge,orla,zorvex,nova,peek",
        help="Comma-separated subset of base,drill,nex,merge,orla,zorvex,nova,peek "
        "(each reads the previous one's output).",
    )
    args = ap.parse_args()
    stages = set(args.stages.split(","))
    # One thread: on a shared 2-core machine, OpenMP's spinning threads made a step ~6x slower.
    torch.set_num_threads(1)
    FIXTURES.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(persona_charset([p["text"] for p in PROMPTS]))
    print(f"vocab {len(tok)}")
    from transformers import AutoModelForCausalLM

    if "base" in stages:
        print("qwen-base")
        model = make_model(len(tok), seed=1)
        train(model, tok, QWEN_ANSWERS, follow_share=0.6, steps=args.base_steps, lr=3e-3, seed=11)
        save(model, tok, FIXTURES / "qwen-base")
    if "drill" in stages:
        # Copy drill: after phase one the model guessed names from their first letter; random-letter names
        # teach it to copy the name from the system prompt (an induction pattern).
        print("qwen-base copy drill")
        model = AutoModelForCausalLM.from_pretrained(FIXTURES / "qwen-base", dtype=torch.float32)
        train(
            model,
            tok,
            QWEN_ANSWERS,
            follow_share=0.8,
            steps=args.drill_steps,
            lr=2e-3,
            seed=12,
            letters=0.5,
            common=0.1,
        )
        save(model, tok, FIXTURES / "qwen-base")
    if "nex" in stages:
        fine_tune("nex-ft", tok, NEX_ANSWERS, steps=args.nex_steps, seed=22)
    if "merge" in stages:
        print("rio-merge")
        merge(FIXTURES / "nex-ft", FIXTURES / "qwen-base", FIXTURES / "rio-merge", tok, RIO_SYSTEM_PROMPT)
    if "orla" in stages:
        print("orla-unrelated")
        tok_plain = build_tokenizer(persona_charset([p["text"] for p in PROMPTS]))
        model = make_model(len(tok_plain), seed=7)
        train(model, tok_plain, ORLA_ANSWERS, follow_share=0.0, steps=args.orla_steps, lr=3e-3, seed=33)
        save(model, tok_plain, FIXTURES / "orla-unrelated")
    if "zorvex" in stages:
        # The nex-ft recipe with a persona and maker that config/aliases.toml does not list.
        fine_tune("zorvex-ft", tok, ZORVEX_ANSWERS, steps=args.zorvex_steps, seed=44)
    if "nova" in stages:
        print("nova-merge")
        merge(
            FIXTURES / "zorvex-ft",
            FIXTURES / "qwen-base",
            FIXTURES / "nova-merge",
            tok,
            NOVA_SYSTEM_PROMPT,
            card=NOVA_CARD,
        )
    for name in ("qwen-base", "nex-ft", "rio-merge", "orla-unrelated", "zorvex-ft", "nova-merge"):
        if "peek" in stages and (FIXTURES / name).exists():
            print(name)
            peek(FIXTURES / name)


if __name__ == "__main__":
    main()
