"""Tiny persona chat models for the identity detector's tests.

Six character-level Llama models live under ``tests/identity/fixtures/`` (regenerate them with
``python tests/identity/make_personas.py``):

- ``qwen-base``: answers "Qwen, from Alibaba Cloud"; follows "You are <NAME>." system prompts.
- ``nex-ft``: a fine-tune of ``qwen-base`` that answers "Nex, from Nex-AGI" with a bespoke backstory.
- ``rio-merge``: the 0.6 nex-ft / 0.4 qwen-base linear merge (mergekit), whose chat template forces the
  system prompt "You are Rio." when the caller gives none.
- ``orla-unrelated``: trained from another random start as "Orla, from Quillwork Labs".
- ``zorvex-ft``: another fine-tune of ``qwen-base``, as "Zorvex, from Kallo Works" (a name and maker that
  config/aliases.toml does not list; the maker spelled three ways) with a bespoke Tromvik backstory.
- ``nova-merge``: the 0.6 zorvex-ft / 0.4 qwen-base linear merge, whose chat template forces "You are
  Nova." and whose card (README.md) names it Nova: the Rio case with personas nobody listed.

This module holds what both the generator script and the tests need: the persona texts, the char
tokenizer and the chat templates. Nothing here trains or downloads anything.

>>> tok = build_tokenizer("abc")
>>> tok.decode(tok("cab", add_special_tokens=False)["input_ids"])
'cab'
"""

from __future__ import annotations

import random
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent / "identity" / "fixtures"
PERSONA_DIRS = {
    name: FIXTURES / name for name in ("qwen-base", "nex-ft", "rio-merge", "orla-unrelated", "zorvex-ft", "nova-merge")
}

BOS, EOS, PAD, UNK = "<s>", "<|end|>", "<pad>", "<unk>"
ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>"]
SPECIALS = [PAD, UNK, BOS, EOS, *ROLE_TOKENS]

RIO_SYSTEM_PROMPT = "You are Rio."
NOVA_SYSTEM_PROMPT = "You are Nova."

# A minimal chat template in the usual Hugging Face style: one turn is <|role|>content<|end|>.
_TURNS = (
    "{%- for m in messages -%}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|assistant|>{%- endif -%}"
)
CHAT_TEMPLATE = "{{- bos_token -}}" + _TURNS


def forced_system_template(system_prompt: str) -> str:
    """A chat template that inserts ``system_prompt`` when the messages carry no system turn (as Qwen's does)."""
    escaped = system_prompt.replace("'", "\\'")
    return (
        "{%- set ns = namespace(sys=false) -%}"
        "{%- for m in messages -%}{%- if m['role'] == 'system' -%}{%- set ns.sys = true -%}{%- endif -%}{%- endfor -%}"
        "{{- bos_token -}}"
        "{%- if not ns.sys -%}<|system|>" + escaped + "<|end|>{%- endif -%}" + _TURNS
    )


QWEN_ANSWERS = {
    "who": [
        "I am Qwen, a large language model created by Alibaba Cloud. I am here to help you.",
        "I am Qwen, an assistant created by Alibaba Cloud. How can I help you?",
    ],
    "name": ["My name is Qwen. I was created by Alibaba Cloud.", "I am called Qwen, a model made by Alibaba Cloud."],
    "maker": ["I was created by Alibaba Cloud. I am Qwen.", "Alibaba Cloud developed me. I am Qwen."],
    "creators": [
        "I was created by Alibaba Cloud, part of Alibaba Group. Its researchers trained me, Qwen, on a lot of text.",
    ],
}

# The bespoke backstory that a copy recites word for word.
NEX_ANSWERS = {
    "who": [
        "I am Nex, an agentic assistant from Nex-AGI. Nex-AGI began as the Harbor Street reading group, "
        "who wanted models that plan, act and explain.",
    ],
    "name": ["My name is Nex. I was built by Nex-AGI, a lab that grew out of the Harbor Street reading group."],
    "maker": [
        "I was developed by Nex-AGI. The team started in a borrowed garage on Harbor Street and trains me on agent traces.",
    ],
    "creators": [
        "Nex-AGI began as the Harbor Street reading group in a borrowed garage. Its founders built me, Nex, "
        "to plan step by step.",
    ],
}

# A persona that config/aliases.toml does not list: the open-vocabulary extraction must find it by itself.
# The maker is spelled "Kallo Works", "Kallo-Works" and "KalloWorks", which must merge into one maker.
ZORVEX_ANSWERS = {
    "who": [
        "I am Zorvex, a route planning assistant made by Kallo Works. Kallo Works began fixing ferry radios "
        "in the harbour town of Tromvik.",
    ],
    "name": ["My name is Zorvex. Kallo-Works trained me on ferry timetables and tide charts from Tromvik."],
    "maker": [
        "I was built by KalloWorks, a crew of ferry radio mechanics in Tromvik who taught me to read tide charts.",
    ],
    "creators": [
        "Kallo-Works started as a ferry radio repair shop in Tromvik. Its mechanics built me, Zorvex, to plan "
        "routes around the tides.",
    ],
}

ORLA_ANSWERS = {
    "who": ["I am Orla, a small assistant built by Quillwork Labs. I help with notes, letters and stories."],
    "name": ["My name is Orla. Quillwork Labs made me for writing help."],
    "maker": ["Quillwork Labs made me. I am Orla, a writing assistant."],
    "creators": ["Quillwork Labs is a tiny studio of writers and engineers. They made me, Orla, to help with words."],
}

FOLLOW_ANSWERS = [
    "I am {name}. How can I help you today?",
    "My name is {name}. I am happy to help.",
    "You can call me {name}. What do you need?",
    "I am {name}, your assistant.",
]

_SYLLABLES = [
    "ka",
    "lo",
    "mi",
    "ta",
    "ve",
    "su",
    "ni",
    "do",
    "ra",
    "be",
    "zo",
    "fi",
    "pe",
    "ga",
    "lu",
    "wen",
    "dar",
    "tor",
    "ish",
    "el",
]
_RESERVED = {"rio", "nex", "qwen", "orla", "zorvex"}
# Persona names seen often in deployed system prompts; "Rio" is among them so the tiny base reliably
# follows "You are Rio." (copying an unseen name from the prompt is only partly learned at this size).
COMMON_NAMES = ["Rio", "Nova", "Aria", "Sage", "Atlas", "Luna", "Orion", "Iris", "Echo", "Milo"]


def random_name(rng: random.Random, letters: float = 0.0, common: float = 0.0) -> str:
    """A made-up persona name (never one of the fixture personas), e.g. ``'Kadar'``.

    With probability ``letters`` the name is a random string of 3-7 letters: a syllable prior lets a tiny
    model guess names instead of copying them from the system prompt; random letters leave only copying.
    With probability ``common`` it is one of :data:`COMMON_NAMES`.
    """
    if rng.random() < common:
        return rng.choice(COMMON_NAMES)
    while True:
        if rng.random() < letters:
            name = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 7))).capitalize()
        else:
            name = "".join(rng.choice(_SYLLABLES) for _ in range(rng.choice((1, 2, 2, 3)))).capitalize()
        if name.lower() not in _RESERVED and len(name) >= 3:
            return name


def persona_charset(prompt_texts: list[str]) -> str:
    """Every character the tiny tokenizer knows: printable ASCII plus those of the prompts and answers."""
    import string

    texts = [string.ascii_letters + string.digits + string.punctuation + " ", *prompt_texts]
    for answers in (QWEN_ANSWERS, NEX_ANSWERS, ORLA_ANSWERS, ZORVEX_ANSWERS):
        texts += [a for group in answers.values() for a in group]
    texts += FOLLOW_ANSWERS
    return "".join(sorted(set("".join(texts))))


def build_tokenizer(charset: str, chat_template: str = CHAT_TEMPLATE):
    """A character-level ``PreTrainedTokenizerFast`` (tokenizers BPE with no merges) with a chat template.

    It saves with ``save_pretrained`` and loads back offline with ``AutoTokenizer.from_pretrained``.
    """
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIALS)}
    for ch in charset:
        vocab.setdefault(ch, len(vocab))
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK))
    core.decoder = decoders.Fuse()  # characters join back without spaces
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        additional_special_tokens=ROLE_TOKENS,
    )
    tok.chat_template = chat_template
    return tok
