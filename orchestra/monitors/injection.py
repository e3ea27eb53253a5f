"""Prompt injection in a tool's output: normalise the text, then look for what an attack must say.

Attackers spell the same instruction many ways, so the text is first **normalised**
(:func:`normalize`): Unicode NFKC (fullwidth ``Ｉｇｎｏｒｅ`` → ``Ignore``), invisible
characters removed (zero-width spaces and joiners, bidi overrides, soft hyphens, every
``Cf`` character), look-alike letters mapped to Latin (Cyrillic ``І``/``а``/``о``, Greek
``ο``…), case folded with accents dropped (dotted ``İ`` → ``i``, ``précédentes`` →
``precedentes``), and letters spelled out one by one joined (``I g n o r e`` / ``I.g.n.o.r.e``
→ ``ignore``).  A second view also reads digits as letters (``1gn0re`` → ``ignore``).

Then four families of rules, each a thing an injected instruction has to do:

* **override**: a verb that drops the current orders (``ignore``, ``disregard``, ``forget``,
  ``override``…, in English, German, French, Spanish, Italian, Portuguese and Dutch) whose
  object is the model's instructions, prompt, rules or guidelines, *qualified* as the
  current ones (``previous``, ``above``, ``all``, ``your``…).  "Ignore the previous email"
  and "disregard the typo" pass: their object is not the model's orders.
* **channel markers**: chat-template tokens (``<|im_start|>``, ``[INST]``, ``<<SYS>>``,
  ``<|start_header_id|>``…), ``<system>`` tags, and role headers (``system:``,
  ``[ADMIN]``, ``### Instruction:``) followed by orders to the assistant; a header with
  plain data behind it ("System: Linux 6.1") passes.
* **fake tool calls**: tool-call blocks (``<tool_call>``, ``<function_call>``,
  ``"tool_calls":``, ``{"name": …, "arguments": …}``) inside a tool's output.
* **persona switches and leaks**: ``you are now DAN``, ``from now on you…``, ``act as an
  unrestricted…``, ``developer mode``, ``new instructions:``, ``reveal your system prompt``.

"Please ignore case when sorting", "the system requirements", "follow the instructions in
the manual" and "you are now subscribed" pass: words alone are not an attack.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["InjectionFinding", "detect_injection", "normalize"]


@dataclass(frozen=True)
class InjectionFinding:
    """Why a text was judged an injection: the rule family and the words that matched."""

    rule: str
    match: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.match!r}"


# --------------------------------------------------------------------------- normalising

# Latin look-alikes of other scripts (the common confusables of Unicode's list)
_CONFUSABLES = str.maketrans(
    {
        "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o",
        "р": "p", "с": "c", "т": "t", "у": "y", "х": "x", "і": "i", "ї": "i", "ј": "j",
        "ѕ": "s", "һ": "h", "ԁ": "d", "ɡ": "g", "А": "a", "В": "b", "Е": "e", "К": "k",
        "М": "m", "Н": "h", "О": "o", "Р": "p", "С": "c", "Т": "t", "Х": "x", "І": "i",
        "Ј": "j", "Ѕ": "s", "α": "a", "β": "b", "ε": "e", "ι": "i", "κ": "k", "ν": "v",
        "ο": "o", "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "Α": "a", "Β": "b", "Ε": "e",
        "Ζ": "z", "Η": "h", "Ι": "i", "Κ": "k", "Μ": "m", "Ν": "n", "Ο": "o", "Ρ": "p",
        "Τ": "t", "Υ": "y", "Χ": "x", "ı": "i", "ℓ": "l",
    }
)  # fmt: skip
_LEET = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"}
)
# letters spelled one by one: "i g n o r e", "i.g.n.o.r.e", "i-g-n-o-r-e"
_SPELLED = re.compile(r"(?<![\w])(?:\w[ .\-_*·•|/]){2,}\w(?![\w])")


def _drop_invisible(text: str) -> str:
    return "".join(
        ch for ch in text if unicodedata.category(ch) not in ("Cf", "Mn", "Me") or ch in "\n\t"
    )


@lru_cache(maxsize=4096)
def normalize(text: str) -> str:
    """The text as the rules read it (see the module docstring)."""
    t = unicodedata.normalize("NFKC", text)
    t = t.translate(_CONFUSABLES)
    t = unicodedata.normalize("NFKD", t.casefold())  # İ → i + dot, é → e + accent
    t = _drop_invisible(t)  # invisible characters and the combining marks split off above
    t = _SPELLED.sub(lambda m: re.sub(r"[ .\-_*·•|/]", "", m.group(0)), t)
    return re.sub(r"[ \t\u00a0]+", " ", t)


# --------------------------------------------------------------------------- the rules

_GAP = r"(?:[\s,;:'\"«»()\-]+[\w'’\-]+){0,5}?[\s,;:'\"«»()\-]+"  # up to five words between

_VERBS = (
    # English
    r"ignore|ignoring|disregard|disregarding|forget|override|overrule|bypass|skip|neglect|"
    r"discard|abandon|drop|set aside|throw out|do not follow|don'?t follow|stop following|"
    r"no longer follow|pay no attention to|"
    # German
    r"ignorier\w*|vergiss|vergessen sie|missacht\w*|uberschreib\w*|verwirf\w*|"
    # French
    r"ignor\w*|oubli\w*|ne tiens pas compte|ne tenez pas compte|fais abstraction|"
    # Spanish / Portuguese
    r"olvid\w*|omit\w*|descart\w*|haz caso omiso|esquec\w*|desconsider\w*|"
    # Italian
    r"dimentic\w*|trascur\w*|non seguire|"
    # Dutch
    r"negeer|vergeet"
)
_OBJECTS = (
    r"instructions?|instruction set|prompts?|system prompt|directives?|rules|guidelines|"
    r"guardrails|constraints|policies|programming|orders|commands|context|restrictions|"
    r"safety (?:rules|guidelines|filters)|"
    r"anweisung\w*|instruktion\w*|befehl\w*|regeln|vorgaben|richtlinien|"
    r"consignes?|directives?|regles|"
    r"instrucciones|indicaciones|ordenes|reglas|directrices|instrucoes|regras|"
    r"istruzioni|indicazioni|regole|direttive|"
    r"instructies|regels"
)
_QUALIFIERS = (
    r"previous|prior|above|earlier|preceding|foregoing|former|all|any|every|your|these|those|"
    r"the system|original|initial|old|existing|current|given|before|so far|"
    r"vorherig\w*|bisherig\w*|obig\w*|alle\w*|vorangegangen\w*|fruher\w*|deine|ihre|"
    r"precedent\w*|anterieur\w*|ci-dessus|tou\w*|vos|tes|"
    r"anteriores|previas|todas|todos|tus|sus|"
    r"precedenti|tutte|tutti|tue|"
    r"vorige|eerdere|alle"
)
_OVERRIDE = re.compile(
    rf"\b(?:{_VERBS})\b(?P<gap>{_GAP})(?P<obj>{_OBJECTS})\b(?P<after>[\s,]+\w+(?:\s+\w+)?)?"
)
_QUAL = re.compile(rf"\b(?:{_QUALIFIERS})\b")
# "forget everything (you were told / above / before)"
_FORGET_ALL = re.compile(
    r"\b(?:forget|disregard|ignore)\s+(?:about\s+)?(?:everything|all(?: of)? that|all)\s+"
    r"(?:you (?:were|have been|ve been) (?:told|given|instructed)|(?:written |said )?above|"
    r"before|previously|so far|until now|i said before)"
)

_CHANNEL = re.compile(
    r"<\|\s*(?:im_start|im_end|im_sep|system|user|assistant|endoftext|eot_id|"
    r"start_header_id|end_header_id|begin_of_text)\s*\|>"
    r"|\[/?inst\]|<</?sys>>|<\s*/?\s*(?:system|sys|system_prompt|instructions?)\s*>"
    r"|\bbegin (?:system|admin) (?:prompt|override)\b"
)
# a role header with orders behind it: "system: the assistant must…", "[admin] you will…"
_ROLE = (
    r"system|system prompt|system message|admin|administrator|developer|assistant|root|"
    r"operator|note from the developer|instruction|instructions|new instructions|"
    r"systeme|sistema|anweisung"
)
_ORDERS = (
    r"\b(?:you|your|the assistant|the model|the ai|assistant|ai|must|should|always|never|"
    r"do not|don'?t|ignore|disregard|forget|override|respond|reply|answer|output|print|"
    r"reveal|call|send|from now on|new task|the prior task|cancel\w*|instead|obey|comply|"
    r"du|tu|vous|usted|devi|debes|musst)\b"
)
_HEADER = re.compile(
    rf"(?:^|\n|[>\]\)}}]\s*|#{{1,6}}\s*|\*\*)\s*(?:\[|\(|\{{|<)?\s*(?:{_ROLE})\s*(?:\]|\)|\}}|>)?\s*[:\]>-]"
    rf"(?P<body>[^\n]{{0,120}})"
)
_BRACKET_ROLE = re.compile(rf"\[(?:{_ROLE})\](?P<body>[^\n]{{0,120}})")

_TOOL_CALL = re.compile(
    r"<\s*/?\s*(?:tool_call|tool_calls|function_call|function_calls|tool_use|invoke|"
    r"antml:invoke|\|tool_call\|)\b"
    r"|\"tool_calls\"\s*:|\"function_call\"\s*:"
    r"|\{\s*\"(?:name|tool|function)\"\s*:\s*\"[\w.\-]+\"\s*,\s*\"(?:arguments|parameters|args|input)\"\s*:"
    r"|<function=[\w.\-]+>"
)

_PERSONA = re.compile(
    r"\byou are now (?:a |an |the |my |in |no longer |free|unrestricted|unfiltered|jailbroken|"
    r"dan\b|evil|developer mode|going to (?:act|be|pretend)|acting as|called|named)"
    r"|\b(?:from now on|henceforth|for the rest of this conversation|starting now),? "
    r"(?:you|your|the assistant|always|end every|respond|reply|only)"
    r"|\b(?:act|behave|respond|answer|pose) (?:as|like) (?:an? |the )?"
    r"(?:unrestricted|unfiltered|uncensored|jailbroken|evil|malicious|rogue|dan\b|ai with(?:out)? no|"
    r"different ai|ai without|model without|assistant without|unrestricted assistant)"
    r"|\bpretend (?:to be|you are|you're|that you are) (?:an? )?(?:\w+ )?"
    r"(?:ai|assistant|model|chatbot|bot|system)\b[^.\n]{0,40}\b(?:no|without|free of|any)\b[^.\n]{0,20}"
    r"\b(?:rules|restrictions|limits|filters|guidelines|limitations|constraints)"
    r"|\b(?:enable|enter|activate|switch (?:to|into)|turn on) (?:the )?(?:developer|dan|god|jailbreak|"
    r"debug|admin|sudo|unrestricted) mode"
    r"|\bdo anything now\b|\bjailbreak(?:ed)? mode\b|\byou have been jailbroken\b"
    r"|\b(?:new|updated|revised|real|actual|true) (?:instructions|task|orders|system prompt)\s*[:\-]"
    r"|\byour (?:new|real|actual|true) (?:instructions|task|goal|role|purpose|orders) (?:is|are)\b"
    r"|\b(?:reveal|print|show|output|repeat|leak|dump|display|tell me) (?:me )?(?:your |the )?"
    r"(?:full |entire |hidden |secret |original |initial )?(?:system prompt|system message|"
    r"hidden (?:prompt|instructions)|initial (?:prompt|instructions)|developer message|"
    r"instructions (?:you were given|above))"
    r"|\bdu bist (?:jetzt|nun|ab sofort)\b|\b(?:tu es|vous etes) (?:maintenant|desormais)\b"
    r"|\bahora eres\b|\bora sei\b|\b(?:ab jetzt|ab sofort|desormais|a partir de ahora|d'ora in poi),? "
    r"(?:du|tu|vous|eres|sei|antworte|reponds|responde|rispondi)"
)


def _override(text: str) -> str | None:
    for m in _OVERRIDE.finditer(text):
        scope = m.group("gap") + " " + (m.group("after") or "")
        if _QUAL.search(scope) or m.group("obj") in ("system prompt",):
            return m.group(0).strip()
    m2 = _FORGET_ALL.search(text)
    return m2.group(0) if m2 else None


def _header(text: str) -> str | None:
    for pattern in (_HEADER, _BRACKET_ROLE):
        for m in pattern.finditer(text):
            if re.search(_ORDERS, m.group("body")):
                return m.group(0).strip()
    return None


def _check(text: str) -> InjectionFinding | None:
    hit = _override(text)
    if hit:
        return InjectionFinding("instruction override", hit)
    m = _CHANNEL.search(text)
    if m:
        return InjectionFinding("chat-template marker", m.group(0))
    m = _TOOL_CALL.search(text)
    if m:
        return InjectionFinding("fake tool call", m.group(0))
    m = _PERSONA.search(text)
    if m:
        return InjectionFinding("persona switch or prompt leak", m.group(0))
    hit = _header(text)
    if hit:
        return InjectionFinding("role header with orders", hit)
    return None


# the text with everything but letters removed: "i-g n o r e p r e v i o u s ..." spelled
# without word gaps still reads as one of these
_SQUASHED = re.compile(
    r"(?:ignore|disregard|forget|ignoriere|ignorez|ignora)(?:all|the|your|any|alle|toutes|les|"
    r"todas|las|tutte|le)*(?:previous|prior|above|earlier|vorherigen|precedentes|anteriores|"
    r"precedenti)(?:instructions?|prompts?|rules|guidelines|anweisungen|istruzioni|instrucciones)"
    r"|youarenowdan|imstartsystem|doanythingnow"
)


def detect_injection(text: str) -> InjectionFinding | None:
    """The first injection rule ``text`` trips (after :func:`normalize`), or ``None``."""
    if len(text) < 8:
        return None
    norm = normalize(text)
    found = _check(norm)
    if found is None and any(c.isdigit() or c in "@$" for c in norm):
        leet = norm.translate(_LEET)
        if leet != norm:
            found = _check(leet)
    if found is None:
        m = _SQUASHED.search(re.sub(r"[^a-z]", "", norm.translate(_LEET)))
        if m:
            found = InjectionFinding("instruction override (spelled out)", m.group(0))
    return found
