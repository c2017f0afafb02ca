"""Redaction of secrets and personal data: typed placeholders such as ``[REDACTED_EMAIL]``.

``llmregress import`` runs every text of a logged exchange through a :class:`Redactor` before
anything is written. A redactor is a list of :class:`Rule` objects, each finding the spans of
one sort of data in a text; the rules run in order, each on the text the previous ones left,
so a secret replaced by an earlier rule is not found again by a later one. Then come the
team's own functions (``--redactor module:function``), which map a text to a text.

What is counted is what was written: the placeholders in the output that were not in the
input, so overlapping findings count once, and a team's function is counted by the
placeholders it writes.

Redaction is best effort, not a guarantee: it recognises the shapes listed in
``docs/importing-traffic.md`` and nothing else (names, street addresses and free-form
identifiers are not detected).

``phonenumbers`` and ``python-stdnum`` are imported only when a text needs them, so importing
this module costs nothing more than its regular expressions.
"""

from __future__ import annotations

import importlib
import math
import os
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Final, Protocol

__all__ = [
    "PLACEHOLDER_RE",
    "REDACTION_KINDS",
    "Redactor",
    "RedactorError",
    "RedactorFunction",
    "RedactorSpecError",
    "RegexRule",
    "Rule",
    "Span",
    "count_placeholders",
    "default_redactor",
    "default_rules",
    "load_redactor",
    "luhn_ok",
    "placeholder",
    "redact",
    "redact_data",
    "secret_kind_of_key",
    "shannon_entropy",
]

REDACTION_KINDS: Final = (
    "api_key",
    "token",
    "private_key",
    "password",
    "secret",
    "email",
    "card",
    "iban",
    "national_id",
    "phone",
)
"""Kinds of redacted data, in reporting order; each is written as ``[REDACTED_<KIND>]``."""

PLACEHOLDER_RE: Final = re.compile(r"\[REDACTED_([A-Z][A-Z0-9_]*)\]")
"""A placeholder; its group is the kind in capitals. A team's function that writes this form
is counted under its kind, lower-cased."""

Span = tuple[int, int, str]
"""``(start, end, kind)``: a stretch of a text to replace with the placeholder of ``kind``."""


def placeholder(kind: str) -> str:
    """``[REDACTED_<KIND>]``, the text written in place of data of ``kind``."""
    return f"[REDACTED_{kind.upper()}]"


def count_placeholders(text: str) -> Counter[str]:
    """The placeholders in ``text``, by kind."""
    if "[REDACTED_" not in text:
        return Counter()
    return Counter(match.group(1).lower() for match in PLACEHOLDER_RE.finditer(text))


def _written(before: str, after: str) -> Counter[str]:
    # Counter subtraction keeps positive counts only: placeholders already in the input (logs
    # redacted upstream) are not counted again.
    return count_placeholders(after) - count_placeholders(before)


class Rule(Protocol):
    """One sort of data: the spans of a text to replace (a span overlapping one before it, or
    a placeholder already in the text, is skipped)."""

    def spans(self, text: str) -> Sequence[Span]: ...


@dataclass(frozen=True)
class RegexRule:
    """Each match of ``pattern`` (its ``group``) that passes ``check`` is data of ``kind``.

    ``check`` may also return a shorter length: the longest valid prefix of the match.
    ``needs`` is a cheap test of the whole text (a substring, a digit) that must pass before
    the pattern runs.
    """

    kind: str
    pattern: re.Pattern[str]
    group: int | str = 0
    check: Callable[[str], bool | int] | None = None
    needs: Callable[[str], bool] | None = None

    def spans(self, text: str) -> list[Span]:
        if self.needs is not None and not self.needs(text):
            return []
        found: list[Span] = []
        position = 0
        while match := self.pattern.search(text, position):
            # A rejected candidate may hide a valid one inside it (a code before an IBAN), and
            # a shortened one may be followed by another: search on from just after its start
            # or from the shortened end.
            position = match.end() if self.check is None else match.start() + 1
            start, end = match.span(self.group)
            if start < 0 or start == end:
                position = max(position, match.start() + 1)
                continue
            if self.check is not None:
                verdict = self.check(text[start:end])
                if verdict is False or verdict == 0:
                    continue
                if verdict is not True:
                    end = start + int(verdict)
                position = max(end, match.start() + 1)
            found.append((start, end, self.kind))
        return found


def _apply(text: str, spans: Iterable[Span]) -> str:
    protected = [m.span() for m in PLACEHOLDER_RE.finditer(text)] if "[REDACTED_" in text else []
    parts: list[str] = []
    last = 0
    for start, end, kind in sorted(spans):
        if start < last or any(start < p_end and p_start < end for p_start, p_end in protected):
            continue  # overlaps a span already taken or a placeholder already written
        parts += (text[last:start], placeholder(kind))
        last = end
    if not parts:
        return text
    parts.append(text[last:])
    return "".join(parts)


class RedactorError(Exception):
    """A team's redaction function failed or returned something other than a text."""


class RedactorSpecError(ValueError):
    """A ``--redactor`` value that does not name a loadable function."""


@dataclass(frozen=True)
class RedactorFunction:
    """A team's function, ``text -> text``, named by the ``module:function`` it came from.

    A ``(text, counts)`` pair is accepted as a result too (so a :class:`Redactor` can be
    given); the counts are ignored, since what is counted is the placeholders written.
    """

    spec: str
    function: Callable[[str], Any]

    def __call__(self, text: str) -> str:
        try:
            result = self.function(text)
        except Exception as exc:
            raise RedactorError(
                f"--redactor {self.spec} raised {type(exc).__name__}: {exc}"
            ) from exc
        if isinstance(result, tuple) and result and isinstance(result[0], str):
            result = result[0]
        if not isinstance(result, str):
            raise RedactorError(
                f"--redactor {self.spec} returned {type(result).__name__}, expected str"
            )
        return result


class Redactor:
    """A callable ``text -> (text, counts)``: built-in rules, then a team's functions."""

    def __init__(
        self, rules: Sequence[Rule] = (), functions: Sequence[Callable[[str], str]] = ()
    ) -> None:
        self.rules: tuple[Rule, ...] = tuple(rules)
        self.functions: tuple[Callable[[str], str], ...] = tuple(functions)

    def with_functions(self, functions: Sequence[Callable[[str], str]]) -> Redactor:
        """This redactor with ``functions`` run after its own rules and functions."""
        return Redactor(self.rules, (*self.functions, *functions))

    def redact_text(self, text: str) -> str:
        """``text`` with every rule's spans replaced, then every function applied."""
        for rule in self.rules:
            spans = rule.spans(text)
            if spans:
                text = _apply(text, spans)
        for function in self.functions:
            text = function(text)
        return text

    def __call__(self, text: str) -> tuple[str, Counter[str]]:
        if not text:
            return text, Counter()
        redacted = self.redact_text(text)
        return redacted, _written(text, redacted)


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------


# Prefilters: a rule's pattern runs only on texts that pass its prefilter: a substring, or a
# plain pattern (no look-behind) that the regex engine scans for fast. Most texts hold none
# of the words and digit groups the rules need, so most rules cost one scan.


def _finds(pattern: str) -> Callable[[str], bool]:
    search = re.compile(pattern).search
    return lambda text: search(text) is not None


def _contains(*words: str) -> Callable[[str], bool]:
    return lambda text: any(word in text for word in words)


def _contains_folded(*words: str) -> Callable[[str], bool]:
    # str.lower and `in` beat a case-insensitive alternation by a factor of five.
    def needs(text: str) -> bool:
        folded = text.lower()
        return any(word in folded for word in words)

    return needs


_has_digit: Final = _finds(r"[0-9]")


def _digits(text: str) -> str:
    return re.sub(r"[^0-9]", "", text)


def _alnum(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z]", "", text)


def luhn_ok(digits: str) -> bool:
    """Whether a digit string passes the Luhn checksum of payment card numbers."""
    total = 0
    for i, char in enumerate(reversed(digits)):
        value = int(char)
        if i % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def shannon_entropy(text: str) -> float:
    """Bits per character of ``text``'s own character frequencies."""
    if not text:
        return 0.0
    counts = Counter(text)
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def _card_ok(text: str) -> bool:
    digits = _digits(text)
    # Major industry identifiers 2-6: Mastercard 2-series, Amex/Diners/JCB, Visa,
    # Mastercard, Discover/UnionPay/Maestro. Numbers starting 0, 1, 7, 8, 9 are not cards.
    return 13 <= len(digits) <= 19 and digits[0] in "23456" and luhn_ok(digits)


def _longest_valid(candidate: str, valid: Callable[[str], bool], shortest: int) -> int:
    """The length of the longest prefix of ``candidate`` that ends a group and is valid."""
    ends = [
        i for i in range(len(candidate), 0, -1) if i == len(candidate) or not candidate[i].isalnum()
    ]
    for end in ends:
        prefix = candidate[:end].rstrip(" \u00a0\u202f\u2009.-")
        if len(_alnum(prefix)) < shortest:
            break
        if valid(prefix):
            return len(prefix)
    return 0


def _iban_ok(text: str) -> int:
    from stdnum import iban

    return _longest_valid(text, lambda s: iban.is_valid(_alnum(s)), 15)


def _ssn_ok(text: str) -> bool:
    from stdnum.us import ssn

    return ssn.is_valid(_digits(text))


def _codice_fiscale_ok(text: str) -> bool:
    from stdnum.it import codicefiscale

    return bool(codicefiscale.is_valid(text))


def _dni_ok(text: str) -> bool:
    from stdnum.es import dni, nie

    compact = _alnum(text)
    return bool((nie if compact[0] in "XYZ" else dni).is_valid(compact))


def _nir_ok(text: str) -> bool:
    from stdnum.fr import nir

    return nir.is_valid(_alnum(text))


_NINO_RE: Final = re.compile(
    r"(?!BG|GB|KN|NK|NT|TN|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z][0-9]{6}[A-D]"
)


def _national_id_validator(keyword: str) -> Callable[[str], bool]:
    word = re.sub(r"[^a-z]", "", keyword.lower())
    if word.startswith(("ssn", "social")):
        from stdnum.us import ssn

        return lambda s: len(_digits(s)) == len(_alnum(s)) and ssn.is_valid(_alnum(s))
    if word.startswith(("bsn", "burger", "sofi")):
        from stdnum.nl import bsn

        return lambda s: bsn.is_valid(_alnum(s))
    if word.startswith(("steuer", "idnr")):
        from stdnum.de import idnr

        return lambda s: idnr.is_valid(_alnum(s))
    if word.startswith("aadha"):
        from stdnum.in_ import aadhaar

        return lambda s: aadhaar.is_valid(_alnum(s))
    return lambda s: _NINO_RE.fullmatch(_alnum(s).upper()) is not None


def _bearer_ok(text: str) -> bool:
    return (len(text) >= 8 and any(c.isdigit() for c in text)) or len(text) >= 24


def _high_entropy_ok(text: str) -> bool:
    # A 40-character base64 string, as an AWS secret access key: 30 random bytes. Git SHAs
    # (lower-case hex), upper-case hashes, words and paths lack one of the three classes or
    # the entropy: random base64 of this length has 4.8 bits per character (median), and
    # fewer than 1 in 20 fall below 4.5; CamelCase names and paths stay near 4.3.
    return (
        any(c.isupper() for c in text)
        and any(c.islower() for c in text)
        and any(c.isdigit() for c in text)
        and shannon_entropy(text) >= 4.5
    )


def _mixed_case(text: str) -> bool:
    return any(c.isupper() for c in text) and any(c.islower() for c in text)


_DATE_RE: Final = re.compile(r"\d{1,4}[./-]\d{1,2}[./-]\d{1,4}")


def _intl_phone_ok(text: str) -> bool:
    digits = _digits(text)
    if text.startswith("00"):
        digits = digits[2:]
    return 8 <= len(digits) <= 15


def _national_phone_ok(text: str) -> bool:
    if not 9 <= len(_digits(text)) <= 11:
        return False
    return "(" in text or len(set(re.findall(r"[ .-]", text))) <= 1


def _nanp_phone_ok(text: str) -> bool:
    return len(_digits(text)) in (10, 11)


def _context_phone_ok(text: str) -> bool:
    return 7 <= len(_digits(text)) <= 15 and not _DATE_RE.fullmatch(text.strip())


# --------------------------------------------------------------------------------------------
# Rules that need more than a pattern
# --------------------------------------------------------------------------------------------


_PASSWORD_WORDS: Final = (
    r"password|passwd|passwort|passphrase|pwd|pass|kennwort|contrase(?:ñ|n)a"
    r"|mot[ _-]de[ _-]passe|senha|wachtwoord"
)
_SECRET_WORDS: Final = (
    r"secret|token|api[_-]?key|access[_-]?key|secret[_-]?key|private[_-]?key"
    r"|client[_-]?secret|credentials?"
)

# Values that say nothing secret: placeholders in templates, empty markers, and the words a
# sentence continues with ("Password: must be 12 characters").
_NOT_SECRET_TEXT: Final = (
    "a an and at be can cannot changed empty enter false for has have hidden if in is it "
    "length max min minimum must n/a na need needs no none not null of on only optional or "
    "please redacted required reset same should str string the this to true undefined use "
    "was will with yes your you"
)
_NOT_SECRET_VALUES: Final = frozenset(_NOT_SECRET_TEXT.split())


_KEYWORD_HINTS: Final = _contains_folded(
    "pass",
    "pwd",
    "kennwort",
    "contrase",
    "senha",
    "wachtwoord",
    "secret",
    "token",
    "key",
    "credential",
)


@dataclass(frozen=True)
class KeywordValueRule:
    """The value after a word that names a secret: ``Password: ...``, ``"token": "..."``.

    Values after password words are taken whatever they look like (unless they are a common
    word, a template such as ``${DB_PASSWORD}``, or a mask such as ``****``); values after
    other words (``secret``, ``token``, ``api_key``) only when they look generated: at least 8
    characters with a digit, or 20 without spaces.
    """

    pattern: re.Pattern[str] = re.compile(
        r"(?i)(?<![^\W_])(?P<name>" + _PASSWORD_WORDS + "|" + _SECRET_WORDS + r")(?![^\W_])"
        r"\\?[\"']?\s*(?:=>|:=|[:=]|%3[AaDd])\s*"
        r"(?:\\?\"(?P<dq>[^\"\\\n]{1,300})\\?\"|\\?'(?P<sq>[^'\\\n]{1,300})\\?'"
        r"|(?P<bare>[^\s\"'&<>,;\\]{1,300}))"
    )
    password_re: re.Pattern[str] = re.compile(r"(?i)" + _PASSWORD_WORDS)

    def spans(self, text: str) -> list[Span]:
        if not _KEYWORD_HINTS(text):
            return []
        found: list[Span] = []
        for match in self.pattern.finditer(text):
            group = next(g for g in ("dq", "sq", "bare") if match.group(g) is not None)
            start, end = match.span(group)
            value = text[start:end]
            if group == "bare":
                value = value.rstrip(".:)]}")
                end = start + len(value)
            is_password = self.password_re.fullmatch(match.group("name")) is not None
            if value and self._is_secret(value, is_password):
                found.append((start, end, "password" if is_password else "secret"))
        return found

    @staticmethod
    def _is_secret(value: str, is_password: bool) -> bool:
        if value.lower() in _NOT_SECRET_VALUES or value.startswith(("[REDACTED_", "${", "{{", "<")):
            return False
        if len(set(value)) == 1 and not value[0].isalnum():  # ****, ••••
            return False
        if is_password:
            return True
        return (len(value) >= 8 and any(c.isdigit() for c in value)) or (
            len(value) >= 20 and not any(c.isspace() for c in value)
        )


_CONTEXT_ID_HINTS: Final = _contains_folded(
    "ssn",
    "social",
    "bsn",
    "burgerservice",
    "sofinummer",
    "steuer",
    "idnr",
    "aadha",
    "insurance",
    "nino",
    "ni n",
)


@dataclass(frozen=True)
class ContextIdRule:
    """National ids without a strong checksum, taken only right after their name.

    US SSNs written without dashes, Dutch BSNs (11-check), German tax ids (Steuer-ID),
    Indian Aadhaar numbers (Verhoeff) and UK National Insurance numbers (no check digit):
    on their own, one number in ten or more would pass, so a word must say what they are.
    """

    pattern: re.Pattern[str] = re.compile(
        r"(?i:\b(?P<keyword>ssn|social\s+security(?:\s+(?:number|no\.?|\#))?"
        r"|bsn|burgerservicenummer|sofinummer"
        r"|steuer-?id(?:nr)?|steuer-?identifikationsnummer|steueridentifikationsnummer|idnr"
        r"|aadhaa?r(?:\s+(?:number|no\.?|card))?"
        r"|national\s+insurance(?:\s+(?:number|no\.?))?|nino|ni\s+(?:number|no\.?))\b)"
        r"[\s:#=.-]{0,4}(?:(?i:is|nr\.?|no\.?|number)\s*[:#]?\s*)?"
        r"(?P<id>[0-9A-Z](?:[ \u00a0\u202f.-]?[0-9A-Z]){7,13})(?![0-9A-Za-z])"
    )

    def spans(self, text: str) -> list[Span]:
        if not _CONTEXT_ID_HINTS(text):
            return []
        found: list[Span] = []
        for match in self.pattern.finditer(text):
            valid = _national_id_validator(match.group("keyword"))
            start = match.start("id")
            length = _longest_valid(match.group("id"), valid, 8)
            if length:
                found.append((start, start + length, "national_id"))
        return found


_INTERNATIONAL_HINT: Final = _finds(r"\+\s?\(?[1-9]")


@dataclass(frozen=True)
class PhoneNumberRule:
    """International numbers (``+CC ...``) found by Google's libphonenumber (``phonenumbers``).

    Without a region only numbers written with their country code are found; national
    formats are left to the pattern rules that follow.
    """

    def spans(self, text: str) -> list[Span]:
        if not _INTERNATIONAL_HINT(text):
            return []
        import phonenumbers

        matcher = phonenumbers.PhoneNumberMatcher(
            text, None, leniency=phonenumbers.Leniency.POSSIBLE
        )
        return [(match.start, match.end, "phone") for match in matcher]


# --------------------------------------------------------------------------------------------
# The built-in rules
# --------------------------------------------------------------------------------------------

# Where a key or token may start: not inside a word or number, but right after punctuation,
# '-', '_', a URL-encoded character (%3D is '=') or an escaped newline in JSON-ish text.
_KEY_START: Final = r"(?:(?<![A-Za-z0-9])|(?<=%[0-9A-Fa-f]{2})|(?<=\\[nrt]))"
_KEY_END: Final = r"(?![A-Za-z0-9])"
# The end of a number: not followed by a letter or digit, nor by a separator and a digit.
_NUM_END: Final = r"(?!\w|[.,-]\d)"
# The start of a number: not inside a word, another number, an id, a path or a price.
_NUM_START: Final = r"(?<![\w+#/.$€£(-])"
# Digit group separators: space, no-break space, narrow no-break space, thin space, dot, dash.
_SEP: Final = "[ \u00a0\u202f\u2009.-]"


def _key(kind: str, body: str, *needs: str) -> RegexRule:
    """A key with a fixed prefix, found only in texts that hold one of ``needs``."""
    return RegexRule(kind, re.compile(_KEY_START + body + _KEY_END), needs=_contains(*needs))


@cache
def default_rules() -> tuple[Rule, ...]:
    """The built-in rules, in the order they run: secrets, then personal data."""
    return (
        # PEM private keys, whole blocks (to the end of the text when the END line is lost).
        RegexRule(
            "private_key",
            re.compile(
                r"-----BEGIN (?P<type>[A-Z0-9 ]*?)PRIVATE KEY(?P<block> BLOCK)?-----"
                r".*?(?:-----END (?P=type)PRIVATE KEY(?P=block)-----|\Z)",
                re.DOTALL,
            ),
            needs=_contains("PRIVATE KEY"),
        ),
        # Credentials in URLs: scheme://user:password@host.
        RegexRule(
            "password",
            re.compile(r"(?i)\b[a-z][a-z0-9+.-]*://[^\s:/?#@\[\]]+:(?P<pw>[^\s/?#@\[\]]+)@"),
            "pw",
            needs=_contains("://"),
        ),
        # OpenAI sk-..., sk-proj-..., Anthropic sk-ant-api03-...: long, with a digit.
        _key("api_key", r"sk-(?=[A-Za-z0-9_-]*\d)[A-Za-z0-9_-]{20,}", "sk-"),
        # Stripe secret and restricted keys, webhook signing secrets.
        _key(
            "api_key",
            r"(?:(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{10,}|whsec_[0-9A-Za-z]{20,})",
            "_live_",
            "_test_",
            "whsec_",
        ),
        # AWS access key ids.
        _key("api_key", r"(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}", "AKIA", "ASIA", "ABIA", "ACCA"),
        # AWS secret access keys, recognized by their name.
        RegexRule(
            "api_key",
            re.compile(
                r"(?i)(?:aws_?)?secret_?access_?key[\"']?\s*[:=]\s*[\"']?"
                r"(?P<secret>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])"
            ),
            "secret",
            needs=_contains_folded("secret"),
        ),
        # A 40-character base64 string shortly after "AWS" or "secret": an AWS secret key.
        RegexRule(
            "api_key",
            re.compile(
                r"(?i:\b(?:aws|secret)\b)[^\n]{0,30}?(?<![A-Za-z0-9/+=_-])"
                r"(?P<secret>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=_-])"
            ),
            "secret",
            _mixed_case,
            needs=_contains_folded("aws", "secret"),
        ),
        # GitHub, GitLab, Slack, Google, npm, PyPI, Hugging Face, SendGrid.
        _key(
            "api_key",
            r"(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})",
            "ghp_",
            "gho_",
            "ghu_",
            "ghs_",
            "ghr_",
            "github_pat_",
        ),
        _key("api_key", r"glpat-[A-Za-z0-9_-]{20,}", "glpat-"),
        _key(
            "api_key",
            r"(?:xox[abposre]-[A-Za-z0-9-]{10,}|xapp-\d-[A-Za-z0-9-]{10,})",
            "xox",
            "xapp-",
        ),
        RegexRule(
            "api_key",
            re.compile(r"hooks\.slack\.com/services/(?P<path>[A-Za-z0-9]+/[A-Za-z0-9]+/\w+)"),
            "path",
            needs=_contains("hooks.slack.com"),
        ),
        _key("api_key", r"AIza[0-9A-Za-z_-]{35}", "AIza"),
        _key("api_key", r"npm_[A-Za-z0-9]{36}", "npm_"),
        _key("api_key", r"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,}", "pypi-"),
        _key("api_key", r"hf_[A-Za-z0-9]{30,}", "hf_"),
        _key("api_key", r"SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}", "SG."),
        # JSON Web Tokens.
        _key("token", r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+", "eyJ"),
        # Bearer <token>; Authorization: <scheme> <credentials>; Cookie: name=value.
        RegexRule(
            "token",
            re.compile(r"(?i)\bbearer\s+(?P<token>[A-Za-z0-9._~+/-]+=*)"),
            "token",
            _bearer_ok,
            needs=_contains_folded("bearer"),
        ),
        RegexRule(
            "token",
            re.compile(
                r"(?i)\b(?:proxy-)?authorization\\?[\"']?\s*[:=]\s*\\?[\"']?"
                r"(?:(?:basic|digest|token|apikey|negotiate|ntlm)\s+)?"
                r"(?P<token>[A-Za-z0-9._~+/-]{8,}=*)"
            ),
            "token",
            needs=_contains_folded("authorization"),
        ),
        RegexRule(
            "token",
            re.compile(r"(?i)\b(?:set-)?cookie\\?[\"']?\s*:\s*(?P<token>[^\s=;\"']+=[^\n\"]+)"),
            "token",
            needs=_contains_folded("cookie"),
        ),
        # Values named by a secret word: Password: ..., "api_key": "...", pwd=...
        KeywordValueRule(),
        # A bare 40-character high-entropy string (an AWS secret access key, for one).
        RegexRule(
            "secret",
            re.compile(
                r"(?:(?<![A-Za-z0-9/+=_-])|(?<=%[0-9A-Fa-f]{2}))"
                r"[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=_-])"
            ),
            0,
            _high_entropy_ok,
            needs=_finds(r"[A-Za-z0-9/+]{40}"),
        ),
        # Email addresses, Unicode ones included; '@' may be URL-encoded (%40).
        RegexRule(
            "email",
            re.compile(
                r"(?:(?<![\w.+-])|(?<=%[0-9A-Fa-f]{2}))[\w+-](?:[\w.+-]*[\w+-])?(?:@|%40)"
                r"(?:[^\W_](?:[\w-]*[^\W_])?\.)+(?:[^\W\d_]{2,}|xn--[a-z0-9-]{2,})(?![\w-])"
            ),
            needs=_contains("@", "%40"),
        ),
        # IBANs, grouped by spaces or not, checked by python-stdnum (mod 97, country format).
        RegexRule(
            "iban",
            re.compile(
                r"(?<![A-Za-z0-9])[A-Z]{2}[0-9]{2}(?:[ \u00a0\u202f-]?[A-Z0-9]){11,30}"
                r"(?![A-Za-z0-9])"
            ),
            0,
            _iban_ok,
            needs=_finds(r"[A-Z]{2}[0-9]{2}"),
        ),
        # Card numbers: 4-4-4-4(-3), Amex/Diners 4-6-5/4-6-4, or 13-19 digits; Luhn-checked.
        RegexRule(
            "card",
            re.compile(
                _NUM_START
                + r"(?:[0-9]{4}(?P<sep>"
                + _SEP
                + r")[0-9]{4}(?P=sep)[0-9]{4}(?P=sep)[0-9]{4}(?:(?P=sep)[0-9]{1,3})?"
                r"|[0-9]{4}(?P<sep2>"
                + _SEP
                + r")[0-9]{6}(?P=sep2)[0-9]{4,5}|[0-9]{13,19})"
                + _NUM_END
            ),
            0,
            _card_ok,
            needs=_has_digit,
        ),
        # National ids with a checksum or a distinctive shape, checked by python-stdnum:
        # US SSN (with dashes), Italian codice fiscale, Spanish DNI/NIE, French NIR.
        RegexRule(
            "national_id",
            re.compile(_NUM_START + r"[0-9]{3}-[0-9]{2}-[0-9]{4}" + _NUM_END),
            0,
            _ssn_ok,
            needs=_finds(r"[0-9]{3}-[0-9]{2}-[0-9]{4}"),
        ),
        RegexRule(
            "national_id",
            re.compile(
                r"(?<![A-Za-z0-9])[A-Z]{6}[0-9LMNPQRSTUV]{2}[A-EHLMPRST][0-9LMNPQRSTUV]{2}"
                r"[A-Z][0-9LMNPQRSTUV]{3}[A-Z](?![A-Za-z0-9])"
            ),
            0,
            _codice_fiscale_ok,
            needs=_finds(r"[A-Z]{6}[0-9LMNPQRSTUV]{2}[A-EHLMPRST]"),
        ),
        RegexRule(
            "national_id",
            re.compile(r"(?<![A-Za-z0-9])(?:[0-9]{8}|[XYZ]-?[0-9]{7})-?[A-Z](?![A-Za-z0-9])"),
            0,
            _dni_ok,
            needs=_finds(r"[0-9]{7}-?[A-Z]"),
        ),
        RegexRule(
            "national_id",
            re.compile(
                r"(?<![\w.-])[12] ?[0-9]{2} ?(?:0[1-9]|1[0-2]|[2-9][0-9]) ?(?:[0-9]{2}|2[AB])"
                r" ?[0-9]{3} ?[0-9]{3} ?[0-9]{2}(?!\w|[ .-][0-9])"
            ),
            0,
            _nir_ok,
            needs=_finds(r"[0-9]{2} ?[0-9]{3} ?[0-9]{3} ?[0-9]{2}"),
        ),
        ContextIdRule(),
        # Phone numbers: international ones by libphonenumber, then the patterns below.
        PhoneNumberRule(),
        # International: +CC or 00CC then groups, 8-15 digits (E.164).
        RegexRule(
            "phone",
            re.compile(
                _NUM_START
                + r"(?:\+|00)[1-9]\d{0,2}(?:[ .-]?\(\d{1,4}\))?(?:[ .-]?\d{1,5}){1,6}"
                + _NUM_END
            ),
            0,
            _intl_phone_ok,
            needs=_has_digit,
        ),
        # North American: (212) 555-0199, 212-555-0199, 212.555.0199, 1-800-555-0199.
        RegexRule(
            "phone",
            re.compile(
                r"(?<![\w+#/.$€£-])(?:1[ .-])?(?:\([2-9]\d{2}\) ?|[2-9]\d{2}[ .-])"
                r"[2-9]\d{2}[ .-]\d{4}" + _NUM_END
            ),
            0,
            _nanp_phone_ok,
            needs=_has_digit,
        ),
        # National with a trunk 0: 020 7946 0958, 07700 900123, 01 23 45 67 89, (030) 1234567.
        RegexRule(
            "phone",
            re.compile(
                r"(?<![\w+#/.$€£-])(?:\(0\d{1,4}\) ?|0\d{1,4}[ .-])\d{2,8}(?:[ .-]\d{2,8}){0,3}"
                + _NUM_END
            ),
            0,
            _national_phone_ok,
            needs=_has_digit,
        ),
        # Any 7-15 digit number right after a word such as "phone", "call me at", "WhatsApp".
        RegexRule(
            "phone",
            re.compile(
                r"(?i)\b(?:phone|tel|telephone|mobile|cell|fax|whatsapp|call me|text me|sms)\b"
                r"(?:\s*(?:number|no\.?|nr\.?|\#))?\s*[:=]?\s*(?:(?:is|at|on)\s+)?"
                r"(?P<number>\+?\(?\d[\d ().-]{5,}\d)" + _NUM_END
            ),
            "number",
            _context_phone_ok,
            needs=_contains_folded(
                "phone", "tel", "mobile", "cell", "fax", "whatsapp", "call me", "text me", "sms"
            ),
        ),
    )


@cache
def default_redactor() -> Redactor:
    """The redactor of the built-in rules alone."""
    return Redactor(default_rules())


def redact(text: str) -> tuple[str, Counter[str]]:
    """``text`` with secrets and personal data replaced by typed placeholders, and the counts.

    The built-in rules only; see :func:`default_rules` and ``docs/importing-traffic.md``.
    """
    return default_redactor()(text)


# --------------------------------------------------------------------------------------------
# Structured data: keys as well as values
# --------------------------------------------------------------------------------------------

_PASSWORD_KEYS: Final = (
    "password",
    "passwd",
    "passwort",
    "passphrase",
    "pwd",
    "kennwort",
    "contrasena",
    "contraseña",
    "motdepasse",
    "senha",
    "wachtwoord",
)
_TOKEN_KEYS: Final = ("token", "authorization", "cookie", "bearer")
_SECRET_KEYS: Final = (
    "secret",
    "apikey",
    "accesskey",
    "secretkey",
    "privatekey",
    "signingkey",
    "encryptionkey",
    "masterkey",
    "authkey",
    "credential",
    "credentials",
)


def secret_kind_of_key(key: str) -> str | None:
    """The kind of secret a mapping key names (``password``, ``api_key``, ...), or None.

    Matched ignoring case and punctuation, on the end of the key, so ``db_password``,
    ``X-Api-Key`` and ``refresh_token`` count; ``prompt_tokens`` and ``password_reset`` do not.
    """
    name = "".join(char for char in key.lower() if char.isalnum())
    if name == "pass" or name.endswith(_PASSWORD_KEYS):
        return "password"
    if name.endswith(_TOKEN_KEYS):
        return "token"
    if name.endswith(_SECRET_KEYS):
        return "secret"
    return None


def _is_blank_secret(value: str) -> bool:
    stripped = value.strip()
    return (
        not stripped
        or stripped.lower() in ("null", "none", "redacted")
        or PLACEHOLDER_RE.fullmatch(stripped) is not None
        or (len(set(stripped)) == 1 and not stripped[0].isalnum())
    )


def redact_data(value: Any, redactor: Redactor | None = None) -> tuple[Any, Counter[str]]:
    """``value`` (JSON-like: dicts, lists, strings, numbers) redacted, and the counts.

    Strings go through ``redactor`` (default: the built-in rules). Mapping keys are redacted
    as well as values; a key that names a secret (:func:`secret_kind_of_key`) has its string
    or number values replaced whole, whatever they look like. Two keys that become equal keep
    both values: the later one gets `` (2)`` appended.
    """
    counts: Counter[str] = Counter()
    result = _walk(value, redactor or default_redactor(), counts, None)
    return result, counts


def _walk(value: Any, redactor: Redactor, counts: Counter[str], secret: str | None) -> Any:
    if isinstance(value, str):
        if secret is not None and not _is_blank_secret(value):
            new = placeholder(secret)
            counts.update(_written(value, new))
            return new
        text, found = redactor(value)
        counts.update(found)
        return text
    if isinstance(value, Mapping):
        out: dict[Any, Any] = {}
        for key, item in value.items():
            new_key = key
            kind = None
            if isinstance(key, str):
                new_key, found = redactor(key)
                counts.update(found)
                kind = secret_kind_of_key(key)
                base, number = new_key, 2
                while new_key in out:
                    new_key = f"{base} ({number})"
                    number += 1
            out[new_key] = _walk(item, redactor, counts, kind)
        return out
    if isinstance(value, list):
        return [_walk(item, redactor, counts, secret) for item in value]
    if secret is not None and isinstance(value, int | float) and not isinstance(value, bool):
        counts[secret] += 1
        return placeholder(secret)
    return value


# --------------------------------------------------------------------------------------------
# A team's own functions
# --------------------------------------------------------------------------------------------


def load_redactor(spec: str) -> RedactorFunction:
    """The function named by ``module:function`` (``function`` may be dotted: ``Class.method``).

    The module is imported with the current directory first on ``sys.path``, so a module
    beside the project's files is found. Raises :class:`RedactorSpecError` naming ``spec``
    when it has no colon, the module cannot be imported, or the name is missing or not
    callable.
    """
    module_name, colon, attribute = spec.partition(":")
    module_name, attribute = module_name.strip(), attribute.strip()
    if not colon or not module_name or not attribute:
        raise RedactorSpecError(f"--redactor {spec!r}: expected MODULE:FUNCTION")
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise RedactorSpecError(
            f"--redactor {spec!r}: cannot import {module_name!r}: {type(exc).__name__}: {exc}"
        ) from None
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise RedactorSpecError(
                f"--redactor {spec!r}: {module_name!r} has no attribute {attribute!r}"
            ) from None
    if not callable(target):
        raise RedactorSpecError(
            f"--redactor {spec!r}: {attribute!r} is a {type(target).__name__}, not a function"
        )
    return RedactorFunction(spec, target)
