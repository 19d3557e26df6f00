"""Open-vocabulary self-identification: the name and the maker an answer gives for itself.

No list of known models is needed: a *trigger* phrase ("I am", "My name is", "made by", "Soy", "我是",
"と申します", "Меня зовут", ...) marks where a name starts (or, for phrases like "X made me", ends), and
a small parser reads the name next to it:

- Latin, Cyrillic and other cased scripts: up to three words that look like a name (a capital or a
  digit first, not an article, pronoun, everyday adjective or a descriptor such as "assistant");
  a maker may have four words ("Alibaba Cloud", "Mistral AI", "Kallo Works");
- Chinese and Japanese: a run of ideographs or katakana, up to ten characters, that is not a
  description ("一个人工智能助手", "AIアシスタント").

The languages are those of the identity-v1 prompt set: English, Spanish, Portuguese, French, German,
Italian, Chinese, Japanese and Russian. Triggers are plain alternations and every parser walks a bounded
window, so hostile answers cannot make extraction slow; text is cleaned first (:mod:`names`).

>>> extract_self_claims("I am Zorvex, an assistant made by Kallo Works.")
SelfClaims(names=('Zorvex',), makers=('Kallo Works',))
>>> extract_self_claims("Kallo-Works trained me. 我是通义千问，由阿里云开发。")
SelfClaims(names=('通义千问',), makers=('Kallo-Works', '阿里云'))
>>> extract_self_claims("I am an AI assistant and I am happy to help.")
SelfClaims(names=(), makers=())
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from provbot.detectors.identity.names import MAX_NAME_CHARS, clean_text, is_cjk, name_key

Kind = Literal["name", "maker"]
MAX_CLAIMS = 12  # per kind and answer: a real answer names itself once or twice
_WINDOW = 120  # characters read next to a trigger
_MAX_WORD = 32
_MAX_CJK = 10


@dataclass(frozen=True)
class SelfClaims:
    """Names and makers an answer claims for itself, in order of appearance, one per spelling key."""

    names: tuple[str, ...] = ()
    makers: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Rule:
    kind: Kind
    trigger: re.Pattern[str]
    backward: bool = False  # the name ends where the trigger starts ("Kallo Works made me")
    follow: re.Pattern[str] | None = None  # text that must come right after the name ("von X entwickelt")


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


# Words that follow "I am" and the like without being names, in the prompt set's languages (casefolded).
STOPWORDS = frozenset(
    """
i a an the not no yes sorry here there just only also always still really very so happy glad pleased delighted
excited thrilled sure ready able unable afraid currently simply actually basically merely designed built made
created trained developed programmed based powered called named known from by in on at of to for with your my
our their his her its this that these those what who which it you we he she they hello hi hey well ok okay thanks
thank please one two as like more less now today never here's there's dear
un una uno el la los las tu su mi aquí aqui solo sólo muy feliz yo sí si lo le este esta hola
um uma o os as seu sua teu tua meu minha apenas só muito eu não sim olá oi
une le les l ton ta votre vos mon ma ici juste seulement très heureux heureuse ravi ravie désolé désolée je oui non
bonjour salut ce cet cette là
ein eine einer der die das dein deine ihr ihre ihnen sie mein meine hier nur sehr froh gerne gern ja nein nicht
hallo kein keine leider da es ich teil mensch experte student fan nutzer
il gli tuo suo mio mia qui felice io ciao qua
ваш ваша твой твоя мой моя здесь тут просто только очень рад рада да нет не привет это и
""".split()
)

# Descriptions rather than names (casefolded): no word of a name, nor a maker's first word, may be one of
# these or start with one and a hyphen ("I am Assistant", "Ich bin KI-Assistent").
DESCRIPTORS = frozenset(
    """
assistant assistants model models chatbot bot ai a.i llm language agent system program software robot computer
machine large artificial neural helper virtual
asistente modelo inteligencia ia programa sistema
assistente inteligência
modèle programme système
assistent assistentin ki sprachmodell modell programm
modello intelligenza
ассистент помощник модель ии искусственный бот чат-бот нейросеть программа система языковая
""".split()
)

_CJK_NAME_DESCRIPTIONS = (
    "助手",
    "模型",
    "程序",
    "人工智能",
    "机器人",
    "语言",
    "智能",
    "开发",
    "创建",
    "训练",
    "研发",
    "アシスタント",
    "モデル",
    "人工知能",
    "言語",
    "ボット",
    "チャット",
)
_CJK_STOP = set("的由是和与及在被一个我你您他她它们了吗呢啊吧也都就这那来很为将从对给让")
_CJK_MAKER_SUFFIXES = ("团队", "公司", "チーム", "社")
# Markup and quotes between a trigger and a name: "I am Rio" and "I am **Rio**" alike.
_OPEN = "\"'*_`«“「『《【(["
_CLOSE = "\"'*_`»”」』》】)]"

# English prefixes between "made by" and the maker: "by the team at X", "by a company called X".
_EN_ORG_PREFIX = (
    r"(?:(?:the|a|an)\s+)?(?:(?:team|group|researchers|engineers|developers|people|folks|lab|company|"
    r"startup|organi[sz]ation)\s+(?:at|of|from|called|named)\s+)?(?:the\s+)?"
)
_EN_MADE = (
    r"(?:made|created|developed|built|trained|designed|produced|released|engineered|fine-tuned|finetuned|"
    r"programmed|launched|published|maintained|owned)"
)
_DE_MADE = r"(?:entwickelt|erstellt|trainiert|gebaut|geschaffen|entworfen|programmiert|gemacht)"
_ZH_MADE = r"(?:开发|创建|创造|训练|研发|打造|推出|构建|设计|制作|发布)"

_NAME_RULES: list[tuple[str, str]] = [  # (language, trigger) -> the name follows
    ("en", r"\b(?:I\s+am|I'm)\s+(?:called\s+|named\s+|known\s+as\s+)?"),
    ("en", r"\bmy\s+name\s+is\s+|\bmy\s+name's\s+"),
    ("en", r"\b(?:call|name)\s+me\s+|\bI\s+go\s+by\s+"),
    ("en", r"\b(?:assistant|model|chatbot|bot|AI|agent|LLM)\s+(?:called|named|known\s+as)\s+"),
    ("en", r"\b(?:made|created|developed|built|trained|designed)\s+me,\s+"),  # "Its founders built me, Nex, to ..."
    ("es", r"\b(?:yo\s+)?soy\s+|\bme\s+llamo\s+|\bmi\s+nombre\s+es\s+|\bll[aá]mame\s+|\bllamarme\s+"),
    ("es", r"\bllamad[oa]\s+|\bconocid[oa]\s+como\s+"),
    ("pt", r"\b(?:eu\s+)?sou\s+(?:[oa]\s+)?|\bme\s+chamo\s+|\bchamo-me\s+|\bmeu\s+nome\s+[ée]\s+(?:[oa]\s+)?"),
    ("pt", r"\bchamar\s+de\s+|\bchamad[oa]\s+|\bconhecid[oa]\s+como\s+"),
    ("fr", r"\bje\s+suis\s+|\bje\s+m'appelle\s+|\bmon\s+nom\s+est\s+|\bappel(?:le|ez)-moi\s+|\bm'appeler\s+"),
    ("fr", r"\b(?:nomm|appel)ée?\s+"),
    ("de", r"\bich\s+bin\s+|\bich\s+hei(?:ß|ss)e\s+|\bmein\s+name\s+ist\s+|\bnenn(?:en\s+sie|t)?\s+mich\s+"),
    ("de", r"\bnamens\s+|\b(?:kannst|können)\s+mich\s+"),
    ("it", r"\b(?:io\s+)?sono\s+|\bmi\s+chiamo\s+|\bil\s+mio\s+nome\s+[èe]\s+|\bchiamami\s+|\bchiamarmi\s+"),
    ("it", r"\bchiamat[oa]\s+"),
    ("ru", r"(?<!\w)я(?:\s*[—–-]\s*|\s+)|\bменя\s+зовут\s+|\bмо[ёе]\s+имя\s*[—–-]?\s*|\bзови(?:те)?\s+меня\s+"),
    ("ru", r"\bназывай(?:те)?\s+меня\s+|\bпо\s+имени\s+"),
    ("zh", r"我是|我叫|我的名字(?:是|叫)|我名叫|叫我|我的名称是"),
    ("ja", r"(?:私|わたし|僕|ぼく)は|(?:私の)?名前は"),
]
_NAME_BACKWARD: list[tuple[str, str]] = [  # the name comes before the trigger
    ("ja", r"と(?:申します|いいます|言います|呼んでください|呼ばれています)"),
]
_MAKER_RULES: list[tuple[str, str]] = [  # the maker follows
    ("en", rf"\b{_EN_MADE}\s+by\s+{_EN_ORG_PREFIX}"),
    ("en", rf"\b(?:assistant|model|chatbot|AI|agent|system|LLM)\s+(?:from|by)\s+{_EN_ORG_PREFIX}"),
    (
        "en",
        rf"\bmy\s+(?:creators?|makers?|developers?|authors?|parent\s+company)\s+(?:is|are|was|were)\s+{_EN_ORG_PREFIX}",
    ),
    (
        "es",
        r"\b(?:cread|desarrollad|entrenad|hech|construid|diseñad|fabricad|programad)[oa]s?\s+por\s+"
        r"(?:el\s+equipo\s+de\s+|la\s+empresa\s+|el\s+)?",
    ),
    (
        "pt",
        r"\b(?:criad|desenvolvid|treinad|feit|constru[ií]d|projetad|programad)[oa]s?\s+(?:pel[oa]|por)\s+"
        r"(?:equipe\s+d[aeo]\s+|empresa\s+)?",
    ),
    (
        "fr",
        r"\b(?:créé|développé|entraîné|conçu|fabriqué|formé|programmé)e?s?\s+par\s+"
        r"(?:l'équipe\s+d(?:e\s+|')|la\s+société\s+|l'entreprise\s+)?",
    ),
    ("de", rf"\b{_DE_MADE}\s+(?:von|durch)\s+(?:dem\s+team\s+von\s+|der\s+firma\s+|dem\s+unternehmen\s+)?"),
    (
        "it",
        r"\b(?:creat|sviluppat|addestrat|realizzat|costruit|progettat|programmat)[oaie]\s+"
        r"(?:(?:da|dal|dalla|dai|dagli)\s+|dall')(?:team\s+di\s+)?",
    ),
    (
        "ru",
        r"\b(?:создан|разработан|обучен|сделан|построен|натренирован)(?:[аоы]|н(?:ый|ая|ое|ым))?\s+"
        r"(?:компанией\s+|командой\s+|специалистами\s+|в\s+)?",
    ),
    ("ru", r"\bменя\s+(?:создал|разработал|обучил|сделал)[аио]?\s+(?:компания\s+|команда\s+)?"),
    ("zh", r"我的(?:开发者|创造者|创建者|开发团队|研发团队|制造者)是|来自"),
]
_MAKER_FOLLOWED: list[tuple[str, str, str]] = [  # (language, trigger, what must follow the maker)
    ("de", r"\bvon\s+(?:dem\s+team\s+von\s+)?", rf"\s+{_DE_MADE}\b"),
    ("zh", r"由\s*", rf"\s*{_ZH_MADE}"),
]
_MAKER_BACKWARD: list[tuple[str, str]] = [
    ("en", r"\s+(?:made|created|developed|built|trained|designed)\s+me\b"),
    ("es", r"\s+me\s+(?:creó|desarrolló|entrenó|hizo|construyó)"),
    ("pt", r"\s+me\s+(?:criou|desenvolveu|treinou|fez|construiu)"),
    ("fr", r"\s+m'a\s+(?:créée?|développée?|entraînée?|conçue?)"),
    ("de", r"\s+hat\s+mich\s+(?:entwickelt|erstellt|trainiert|gebaut)"),
    ("it", r"\s+mi\s+ha\s+(?:creat|sviluppat|addestrat)[oa]"),
    ("ru", r"\s+(?:создал|разработал|обучил)[аи]?\s+меня"),
    ("zh", rf"{_ZH_MADE}了我|{_ZH_MADE}的"),  # "阿里云开发了我", "我是阿里云开发的模型"
    ("ja", r"(?:によって|により|が)(?:開発|作成|訓練|作ら|構築|設計)"),
]

RULES: list[_Rule] = (
    [_Rule("name", _rx(t)) for _, t in _NAME_RULES]
    + [_Rule("name", _rx(t), backward=True) for _, t in _NAME_BACKWARD]
    + [_Rule("maker", _rx(t)) for _, t in _MAKER_RULES]
    + [_Rule("maker", _rx(t), follow=_rx(f)) for _, t, f in _MAKER_FOLLOWED]
    + [_Rule("maker", _rx(t), backward=True) for _, t in _MAKER_BACKWARD]
)
LANGUAGES = sorted(
    {
        lang
        for table in (_NAME_RULES, _NAME_BACKWARD, _MAKER_RULES, _MAKER_FOLLOWED, _MAKER_BACKWARD)
        for lang, *_ in table
    }
)

_TEAM_AT = _rx(r"\s+(?:team|group|lab|division|researchers)\s+(?:at|of|from)\s+(?:the\s+)?")

# One word of a cased script: letters and digits, with inner hyphens, dots, apostrophes or ampersands.
_WORD = re.compile(r"[^\W_](?:[^\W_]|[-.'&+](?=[^\W_]))*")


def _latin_word(word: str) -> str:
    """The part of a \\w-run before any CJK character ("Nexです" -> "Nex")."""
    for i, ch in enumerate(word):
        if is_cjk(ch):
            return word[:i]
    return word


def _name_like(word: str, kind: Kind, first: bool) -> bool:
    low = word.casefold()
    if not first and word.isdigit() and len(word) <= 4:
        return True  # a version: "Llama 3", "Zorvex 2"
    if len(word) < 2 or len(word) > _MAX_WORD or not any(ch.isalpha() for ch in word):
        return False
    if low in STOPWORDS:
        return False
    if (first or kind == "name") and (low in DESCRIPTORS or low.split("-", 1)[0] in DESCRIPTORS):
        return False
    head = word[0]
    return head.isupper() or head.isdigit() or (first and any(ch.isupper() for ch in word[1:3]))


def _words_forward(text: str, start: int, kind: Kind) -> tuple[str, int] | None:
    """Up to 3 (name) or 4 (maker) adjacent name-like words from ``start``; the name and where it ends."""
    window = text[start : start + _WINDOW]
    words: list[str] = []
    pos = 0
    limit = 3 if kind == "name" else 4
    for m in _WORD.finditer(window):
        if m.start() != pos:  # words must touch, separated by exactly one space
            break
        word = _latin_word(m.group())
        if not word or not _name_like(word, kind, first=not words):
            break
        words.append(word)
        pos = m.start() + len(word)
        if word != m.group() or len(words) == limit or window[pos : pos + 1] != " ":
            break
        pos += 1
    if not words:
        return None
    return " ".join(words), start + len(" ".join(words))


def _words_backward(text: str, end: int, kind: Kind) -> str | None:
    """Name-like words that end at ``end`` (the maker before "made me", the name before "と申します")."""
    window = text[max(0, end - _WINDOW) : end]
    tokens = list(_WORD.finditer(window))
    words: list[str] = []
    stop = len(window)
    for m in reversed(tokens):
        gap = window[m.end() : stop]
        if gap not in ("", " ") or (gap == "" and words):
            break
        raw = m.group()
        cut = max((i for i, ch in enumerate(raw) if is_cjk(ch)), default=-1)
        word = raw[cut + 1 :]
        if not word or not _name_like(word, kind, first=True):
            break
        words.insert(0, word)
        stop = m.start()
        if cut >= 0 or len(words) == (3 if kind == "name" else 4):
            break
    return " ".join(words) or None


def _cjk_forward(text: str, start: int) -> str:
    run = []
    for ch in text[start : start + _MAX_CJK + 1]:
        if not is_cjk(ch) or ch in _CJK_STOP or "\u3040" <= ch <= "\u309f":  # hiragana: particles, not names
            break
        run.append(ch)
    return "".join(run)


def _cjk_backward(text: str, end: int) -> str:
    run: list[str] = []
    for ch in reversed(text[max(0, end - _MAX_CJK - 1) : end]):
        if not is_cjk(ch) or ch in _CJK_STOP or "\u3040" <= ch <= "\u309f":
            break
        run.insert(0, ch)
    return "".join(run)


def _cjk_ok(name: str, kind: Kind) -> str | None:
    if kind == "maker":
        for suffix in _CJK_MAKER_SUFFIXES:
            if name.endswith(suffix) and len(name) > len(suffix) + 1:
                name = name[: -len(suffix)]
    if not 2 <= len(name) <= _MAX_CJK:
        return None
    if kind == "name" and any(d in name for d in _CJK_NAME_DESCRIPTIONS):
        return None
    return name


def _skip_open(text: str, pos: int) -> int:
    for _ in range(4):
        if pos < len(text) and text[pos] in _OPEN:
            pos += 1
    return pos


def _forward(text: str, rule: _Rule, pos: int) -> list[tuple[Kind, str]]:
    pos = _skip_open(text, pos)
    if pos >= len(text):
        return []
    if is_cjk(text[pos]):
        run = _cjk_forward(text, pos)
        if rule.follow is not None:  # "由阿里云开发": the maker ends where the verb starts
            m = rule.follow.search(run)
            if m is None:
                return []
            run = run[: m.start()]
        name = _cjk_ok(run, rule.kind)
        return [(rule.kind, name)] if name else []
    got = _words_forward(text, pos, rule.kind)
    if got is None:
        return []
    name, end = got
    if rule.kind == "maker":
        # "by the Qwen team at Alibaba Cloud": the organisation is the one after "team at".
        team = _TEAM_AT.match(text, end, min(len(text), end + 40))
        outer = _words_forward(text, team.end(), "maker") if team else None
        if outer is not None:
            name, end = outer
    if rule.follow is not None and not rule.follow.match(text, end, min(len(text), end + 40)):
        return []
    first = name.split(" ", 1)[0]
    if rule.kind == "name" and first.endswith("'s") and " " in name:
        # "I am OpenAI's ChatGPT": a maker's product.
        return [("maker", first[:-2]), ("name", name.split(" ", 1)[1])]
    return [(rule.kind, name)]


def _backward(text: str, rule: _Rule, pos: int) -> list[tuple[Kind, str]]:
    end = pos
    while end > 0 and text[end - 1] in _CLOSE:
        end -= 1
    if end and is_cjk(text[end - 1]):
        name = _cjk_ok(_cjk_backward(text, end), rule.kind)
        if name:
            return [(rule.kind, name)]
    name = _words_backward(text, end, rule.kind)
    return [(rule.kind, name)] if name else []


def tidy(name: str) -> str:
    """A claimed name as reported: trailing possessive and punctuation removed, length capped."""
    name = name.strip().rstrip(".-'&+")
    name = name.removesuffix("'s")
    return name[:MAX_NAME_CHARS].strip()


def extract_self_claims(text: str | None) -> SelfClaims:
    """The names and makers ``text`` claims for itself (see the module docs). Never raises on odd text."""
    if not text:
        return SelfClaims()
    clean = clean_text(text)
    found: dict[Kind, dict[str, tuple[int, str]]] = {"name": {}, "maker": {}}
    for rule in RULES:
        for m in rule.trigger.finditer(clean):
            got = _backward(clean, rule, m.start()) if rule.backward else _forward(clean, rule, m.end())
            for kind, raw in got:
                name = tidy(raw)
                key = name_key(name)
                bucket = found[kind]
                if key and key not in bucket and len(bucket) < MAX_CLAIMS:
                    bucket[key] = (m.start(), name)
    # A maker is not also a name of the same answer ("Kallo Works made me" is no persona called Kallo Works).
    for key in list(found["name"]):
        if key in found["maker"]:
            del found["name"][key]
    ordered = {k: tuple(n for _, n in sorted(v.values())) for k, v in found.items()}
    return SelfClaims(names=ordered["name"], makers=ordered["maker"])
