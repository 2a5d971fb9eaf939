"""Content words, light stems and quantities, for lexical overlap in answers and follow-ups.

`content_words` drops Norwegian and English stop words and strips one common
suffix, so "søknaden" and "søknad" match. `asks_for_quantity` and `numbers`
back the refusal rule "a question asking how many / how much / when needs a
number in the passages"; `asks_for_money` / `states_money` ("how much does it
cost" needs an amount in kroner) and `asks_for_person` ("who" needs a name,
`names.py`) back the other answer-type rules;
`counted` / `same_word` ("how many X" needs a number beside a form of X) and
`asks_for_duration` / `states_duration` ("how long" needs a length of time) too.
Deliberately small and dependency-free; retrieval has its own analyser.
"""

from __future__ import annotations

import re

__all__ = ["STOPWORDS", "stem", "content_words", "numbers", "main_question", "counted", "same_word", "words", "tokens",
           "asks_for_duration", "states_duration", "asks_for_quantity", "asks_for_money", "states_money",
           "asks_for_person", "asks_for_date", "dates"]

_WORD = re.compile(r"[0-9a-zæøåäöüéèàáóò]+(?:[-'][0-9a-zæøåäöüéèàáóò]+)*", re.IGNORECASE)
_SUFFIXES = ("heten", "ene", "ane", "ens", "ing", "ers", "er", "en", "et", "ar", "a", "e", "s")

STOPWORDS = frozenset(
    """the a an and or of to in on for with from by is are was were be been being it its this that these those
    what which who whom whose how why when where does do did has have had not no can could would should will
    shall may might must about into over under than then there their they them he she his her we our you your
    i me my as at if so such also only more most other any each all some according said says say
    og i på for med til av er var som det den de en et ei at ikke om har hadde kan skal vil må fra ved
    eller men så også bare mer mest andre hver alle noen blir ble være vært hvordan hva hvem hvilken hvilke
    hvilket hvor hvorfor når etter under over mellom mot uten seg sin sitt sine vi dere oss deres jeg meg min
    mitt du deg din ditt han hun hans hennes dette disse denne slik kva korleis kven kvifor kor ikkje eg ho
    dei frå berre mykje noko nokon vere vore vart ifølge iflg får fikk gjør gjøre gjort sier sa nå da
    kva kor kvar korleis kven kvifor mange many much mye mykje før dit via inn ut """.split()
)


def stem(word: str) -> str:
    """A light stem for Norwegian and English: lower case, one common suffix removed (with the hyphen
    that joins it to an abbreviation: "vCPU-er" and "vCPUer" are both "vcpu")."""
    w = word.lower()
    for suffix in _SUFFIXES:
        if len(w) - len(suffix) >= 4 and w.endswith(suffix):
            return w[: -len(suffix)].rstrip("-")
    return w


def content_words(text: str) -> list[str]:
    """Stems of the words in `text` that carry content (no stop words, no single letters)."""
    out = []
    for match in _WORD.finditer(text):
        w = match.group().lower()
        if len(w) < 2 or w in STOPWORDS:
            continue
        out.append(stem(w))
    return out


_QUANTITY = re.compile(
    r"\b(?:hvor (?:mange|mye|lenge|stor|høy)|kor (?:mange|mykje|lenge)|how (?:many|much|long)|antall|"
    r"number of|budsjett\w*|budget\w*|kost\w*|cost\w*|pris\w*|price\w*|prosent\w*|percent\w*|"
    r"hvilket år|kva år|what year|population|oppetid\w*|uptime|befolkning\w*)\b|^\s*(?:når|when)\b",
    re.IGNORECASE,
)
_NUMBER_WORDS = frozenset(
    """tre fire fem seks sju syv åtte ni ti elleve tolv tretten fjorten femten tjue tretti førti femti hundre
    tusen million millioner milliard milliarder prosent halvparten dobbelt tredje fjerde femte sjette
    two three four five six seven eight nine ten eleven twelve twenty thirty hundred thousand million
    millions billion percent half double third fourth fifth sixth""".split()
)


# A yes/no question ("Does it cost anything ...?", "Må kommunen betale ...?") asks for no quantity.
_YES_NO = re.compile(r"^\s*(?:does|do|did|is|are|was|were|can|could|will|must|has|have|kan|må|er|var|har|skal|"
                     r"vil|blir|får|finnes|fins)\b", re.IGNORECASE)


# "Når en administrator aktiverer en rolle, hvor lenge varer tilgangen?": a clause on when, then the
# question. The question is what follows the comma.
_WHEN_CLAUSE = re.compile(r"^\s*(?:når|when)\b[^?,]*,\s*(?=(?:hvor|hva|hvem|hvordan|hvilk\w*|kan|må|skal|får|"
                          r"blir|bør|er|har|how|what|who|which|can|must|should|do|does|is|are|will)\b)",
                          re.IGNORECASE)


def main_question(question: str) -> str:
    """The question without a leading when-clause ("Når ..., hvor lenge ...?": "hvor lenge ...?")."""
    return _WHEN_CLAUSE.sub("", question, count=1)


def asks_for_quantity(question: str) -> bool:
    """Does the question ask for a number, an amount or a date ("hvor mange", "how much", "når"),
    rather than yes or no ("Does it cost anything ...?")?"""
    question = main_question(question)
    return bool(_QUANTITY.search(question)) and not _YES_NO.search(question)


# "When" in its forms: a question that asks for a point in time (not "hvor lenge", a duration).
_WHEN = re.compile(r"^\s*(?:når|when)\b|\b(?:hvilken dato|kva dato|what date|on what date|hvilket år|kva år|"
                   r"what year|which year|in which year|fra når|since when)\b", re.IGNORECASE)
# "..., og hvem?", "and by whom?": a second question, which the passages may answer on its own
_SECOND_QUESTION = re.compile(r"\b(?:og|and)\s+(?:by\s+)?(?:hvem|hva|hvordan|hvor|når|kven|kva|korleis|"
                              r"who|whom|what|how|where|when|why|hvorfor)\b", re.IGNORECASE)
# ("may", "fall" and "vår", also "our" in Norwegian, are left out: mostly other words.)
_DATE_WORDS = frozenset(
    """januar februar mars april mai juni juli august september oktober november desember
    january february march june july october december jan feb mar apr jun jul aug sep sept okt oct nov dec
    våren sommeren høsten vinteren sommer høst vinter spring summer autumn winter
    mandag tirsdag onsdag torsdag fredag lørdag søndag måndag tysdag laurdag sundag
    monday tuesday wednesday thursday friday saturday sunday kvartal quarter
    klokka klokken kl time timen timer morgen morgenen formiddag formiddagen ettermiddag ettermiddagen
    kveld kvelden natt natten daglig ukentlig månedlig årlig o'clock morning afternoon evening night
    hourly daily weekly monthly yearly annually
    dag dager dagen døgn uke uker uka måned måneder måneden day days week weeks month months""".split()
)
_CLOCK = re.compile(r"\b\d{1,2}[:.]\d{2}\b(?![.:]\d)")  # 07:15, 7.15; not part of 12.03.2025
_YEAR = re.compile(r"^(?:19|20)\d\d$")
# An earlier year after a word that places it in time ("i 1818", "omkring 1830", "fram til 1704"), a
# century ("på 1400-tallet"), and a decade ("1990-tallet").
_EARLY_YEAR = re.compile(r"\b(?:i|år|året|fra|til|rundt|omkring|ca\.?|cirka|siden|før|etter|innen|mellom|og|"
                         r"in|since|from|to|until|till|by|around|before|after|between|and)\s+1\d{3}\b(?![.,-]\d|-)|"
                         r"\b\d{2,4}-tallet\w*", re.IGNORECASE)
_DAY_MONTH = re.compile(r"\b\d{1,2}\.\s?\d{1,2}\.(?:\s?\d{2,4})?|\b\d{4}-\d{2}-\d{2}\b")


def asks_for_date(question: str) -> bool:
    """Does the question ask when ("Når ...", "hvilket år", "on what date"), rather than how long,
    and nothing else ("Hvem utførte analysen, og når?" asks two things)?"""
    question = main_question(question)
    return bool(_WHEN.search(question)) and not _SECOND_QUESTION.search(question)


def dates(text: str) -> set[str]:
    """Tokens that place something in time: years (1900-2099, and earlier after "i", "omkring", "til"
    ...), centuries and decades ("1400-tallet"), months, seasons, weekdays, quarters,
    dates and clock times written with digits ("12.03.2025", "2025-03-12", "07:15"), times of day
    and how often ("klokka seks", "hver time", "daily"), and the days, weeks and months a time is
    counted in ("if more than a month goes by", "innen tre uker")."""
    text = _LABEL.sub(" ", text)  # "versjon 0.63" and "v1.0.0" are not clock times or dates
    found = {w for w in (m.group().lower() for m in _WORD.finditer(text)) if w in _DATE_WORDS or _YEAR.match(w)}
    found |= {m.group().split()[-1].lower() for m in _EARLY_YEAR.finditer(text)}
    return found | {m.group() for m in _DAY_MONTH.finditer(text)} | {m.group() for m in _CLOCK.finditer(text)}


# Numbers that label rather than count: "§ 6", "versjon 2", "v1.0", and a list item's "3. ".
_LABEL = re.compile(r"§+\s*\d+\w*|\b(?:versjon|version|ver|v)\.?\s*\d+(?:\.\d+)*|^\s*\d+[.)]\s",
                    re.IGNORECASE | re.MULTILINE)


def numbers(text: str) -> set[str]:
    """Tokens that state a quantity: anything with a digit, and number words ("tre", "fifth").

    Labels are not quantities: a section ("§ 6"), a version ("versjon 2", "v1"), a list item's
    number, and a code that opens with letters ("ver1", "e5")."""
    return {w for w in (m.group().lower() for m in _WORD.finditer(_LABEL.sub(" ", text)))
            if w in _NUMBER_WORDS or (any(ch.isdigit() for ch in w) and not w[0].isalpha())}


_DURATION_ASKED = re.compile(r"\b(?:hvor lenge|kor lenge|how long|hvor lang tid|kor lang tid|how much time|"
                             r"hvor lang \w*tid\w*|kor lang \w*tid\w*)\b", re.IGNORECASE)
_DURATION = re.compile(
    r"\b(?:\d+(?:[.,]\d+)?|en|ei|et|ett|én|a|an|one|noen|some|few|" + "|".join(sorted(_NUMBER_WORDS)) + r")"
    r"(?:\s+\w+)?\s+(?:sekund\w*|minutt\w*|min|timer?|timen|timane|døgn\w*|dag\w*|virkedag\w*|arbeidsdag\w*|"
    r"uke\w*|veke\w*|måned\w*|månad\w*|år|året|seconds?|minutes?|hours?|days?|working days|weeks?|months?|"
    r"years?)\b", re.IGNORECASE)


def asks_for_duration(question: str) -> bool:
    """Does the question ask how long something lasts or takes ("Hvor lenge ...", "Hvor lang
    saksbehandlingstid ...", "How long ...")?"""
    return bool(_DURATION_ASKED.search(question))


def states_duration(sentence: str) -> bool:
    """Does the sentence state a length of time ("30 minutter", "tre uker", "if more than a month")?"""
    return bool(_DURATION.search(sentence))


_COUNTED = re.compile(r"\b(?:hvor mange|kor mange|how many|number of|antall)\s+([\w-]+)(?:\s+([\w-]+))?",
                      re.IGNORECASE)


def counted(question: str) -> tuple[str, ...]:
    """The words after "hvor mange" / "how many" / "antall", lower case: what the question counts
    ("Hvor mange virkedager har ...": virkedager, har -> ("virkedager",)); stop words left out.
    None for a question that asks a second thing ("Hvor mange bidrag ble levert, og hvor finner
    jeg dem?"): the passages may answer that one, in other words than the question's."""
    match = _COUNTED.search(question)
    if not match or _SECOND_QUESTION.search(question):
        return ()
    return tuple(w.lower() for w in match.groups() if w and w.lower() not in STOPWORDS)


def same_word(a: str, b: str) -> bool:
    """Are two lower-case words forms of one word, or is one a compound on the other?

    The same stem ("søknaden", "søknad"); one word or stem ending in the other, at least 4
    letters ("virkedager", "dager"; "administratortilgang", "tilgangen"); or a shared beginning
    of at least 5 letters that leaves at most 3 letters of either ("leverer", "leveres")."""
    sa, sb = stem(a), stem(b)
    if sa == sb:
        return True
    for x, y in ((a, b), (sa, sb), (a, sb), (sa, b)):
        short, long_ = sorted((x, y), key=len)
        if len(short) >= 4 and long_.endswith(short):
            return True
    long_ = max(a, b, key=len)
    common = 0
    for x, y in zip(a, b):
        if x != y:
            break
        common += 1
    return common >= 5 and common >= len(long_) - 3


def words(text: str) -> list[str]:
    """The lower-case words of `text` (no stems, stop words kept)."""
    return [m.group().lower() for m in _WORD.finditer(text)]


def tokens(text: str) -> list[str]:
    """The words of `text` as written (case kept, for names), without an English possessive "'s"."""
    return [re.sub(r"'s$", "", m.group()) for m in _WORD.finditer(text)]


# "årsprisen", "lisensavgift", "etableringskostnad": a price in a compound (not "Innbyggerprisen", an award)
_PRICE_COMPOUND = (r"(?:års|årlig|måneds|månedlig|time|dags|enhets|stykk|lisens|abonnements|bruks|engangs|"
                   r"etablerings|oppstarts|drifts|tilknytnings|medlems)(?:pris|avgift|gebyr|kostnad)\w*")
_MONEY = re.compile(
    r"\b(?:" + _PRICE_COMPOUND + r"|avgift\w*|charges?|kost\w*|pris\w*|price\w*|cost\w*|budget\w*|budsjett\w*|"
    r"betal\w*|pay|pays|paid|bevilg\w*|amount|"
    r"beløp\w*|spend\w*|spent|surplus|overskudd\w*|underskudd\w*|deficit|gebyr\w*|fees?|lønn\w*|salary)\b",
    re.IGNORECASE,
)
_COUNT = re.compile(r"\b(?:hvor mange|kor mange|how many|antall|number of)\b", re.IGNORECASE)
_AMOUNT = re.compile(r"\b(?:amount|beløp\w*)\b", re.IGNORECASE)
_CURRENCY = re.compile(r"\b(?:kr|kroner|krone|nok|eur|euro|usd|dollars?)\b|[€$£]", re.IGNORECASE)
_MILLIONS = re.compile(r"\b(?:millioner|milliarder|million|billion)\s+(?:kroner|kr|nok|euro|dollars?)\b",
                       re.IGNORECASE)
_FREE = re.compile(r"\b(?:gratis|kostnadsfri\w*|vederlagsfri\w*|free of charge|at no (?:cost|charge)|"
                   r"no (?:cost|charge|fee)s?|uten (?:kostnad|betaling)\w*|ingen (?:kostnad|avgift)\w*)\b",
                   re.IGNORECASE)
_PERSON = re.compile(r"^\s*(?:hvem|kven|who)\b", re.IGNORECASE)


# "Hva betaler en kommune ...", "What is the annual fee ...": asking for a price without "how much".
_PRICE_ASKED = re.compile(
    r"^\s*(?:hva|kva|what)\s+(?:betaler|betalar|koster|kostar|costs?|pays?|charges?)\b|"
    r"^\s*(?:hva|kva|what)\s+(?:is|are|was|er|blir|var)\s+(?:the\s+|den\s+|det\s+)?(?:\w+\s+)?"
    r"(?:fee|fees|price|cost|charge|gebyr\w*|pris\w*|avgift\w*|kostnad\w*|" + _PRICE_COMPOUND + r")\b",
    re.IGNORECASE)

# "Hvilken pris mottok hun i 1972?", "Which prize did they win?": an award, not a price.
_PRIZE = re.compile(r"\b(?:hvilken|hvilke|which|what)\s+(?:\w+\s+)?(?:pris|prisen|priser|prize|prizes|award|"
                    r"awards)\s+(?:mottok|fikk|vant|vann|har|hadde|ble|received|won|got|did|has|have|was)\b",
                    re.IGNORECASE)


def asks_for_money(question: str) -> bool:
    """Does the question ask what something costs, pays or is budgeted ("Hva koster ...", "How much did X pay")?

    A count ("Hvor mange priser deles ut?") is not an amount of money, nor a prize ("Hvilken pris mottok hun?").
    """
    return (bool(_MONEY.search(question)) and not _COUNT.search(question) and not _PRIZE.search(question)
            and (asks_for_quantity(question) or bool(_AMOUNT.search(question)) or bool(_PRICE_ASKED.search(question))))


def states_money(sentence: str) -> bool:
    """Does the sentence state an amount of money ("341 kr", "60 millioner kroner"), or that
    something is free ("gratis", "free of charge")?"""
    return ((bool(_CURRENCY.search(sentence)) and any(ch.isdigit() for ch in sentence))
            or bool(_MILLIONS.search(sentence)) or bool(_FREE.search(sentence)))


def asks_for_person(question: str) -> bool:
    """Does the question ask who ("Hvem ...", "Who ...")?"""
    return bool(_PERSON.search(question))
