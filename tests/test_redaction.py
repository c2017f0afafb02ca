"""Redaction of imported traffic: what is recognised, what is left alone, keys as well as
values, counts equal to what is written, and a team's own ``--redactor`` functions.

Each row of the tables below is one shape a secret or a piece of personal data takes in real
logs; the substring that must not survive is the part that identifies the person or grants
access.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from pytest_llmregress import cli
from pytest_llmregress.authoring.redaction import (
    REDACTION_KINDS,
    Redactor,
    RedactorSpecError,
    RegexRule,
    count_placeholders,
    default_rules,
    load_redactor,
    redact,
    redact_data,
    secret_kind_of_key,
)
from pytest_llmregress.cases.golden import load_cases
from pytest_llmregress.cli.import_logs import main

Capture = pytest.CaptureFixture[str]

PEM_BODY = (
    "MIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi4YQPZ1r3UzG4bSqzLp7Ow2xTx\n"
    "q2mVq8c1JmW1m0bDq3dQ0s9M3QqI8PfD0c5y5Zl0QyJ8vYwD3mH5Yb2vQ0Jc9m1Q\n"
)

# (text, must not survive, kind)
FOUND: list[tuple[str, str, str]] = [
    # API keys wherever they are glued on: %3D (URL-encoded '='), '=', '-', '_', ':', URLs.
    ("k%3Dsk-proj-abc123DEF456ghi789JKL012mno", "abc123DEF456", "api_key"),
    ("OPENAI_API_KEY=sk-proj-abc123DEF456ghi789JKL012mno", "abc123DEF456", "api_key"),
    ("key-sk-abc123DEF456ghi789JKL012mno", "abc123DEF456", "api_key"),
    ("KEY_sk-abc123DEF456ghi789JKL012mno", "abc123DEF456", "api_key"),
    ("key:sk-ant-api03-AbCdEf0123456789_-xyzXYZ0123456789abcd", "AbCdEf0123", "api_key"),
    (
        "GET https://api.example.com/v1/models?api_key=sk-abc123DEF456ghi789JKL012&page=2",
        "abc123DEF456",
        "api_key",
    ),
    ("https://x.example/cb?state=1&token=sk-abc123DEF456ghi789JKL012", "abc123DEF456", "api_key"),
    ("my key is sk-proj-abc123DEF456ghi789JKL012mno, thanks", "abc123DEF456", "api_key"),
    ("sk-ant-api03-AbCdEf0123456789_-xyzXYZ0123456789abcd", "AbCdEf0123", "api_key"),
    # Stripe.
    ("stripe key sk_live_4eC39HqLyjWDarjtT1zdp7dc", "4eC39HqLyjWD", "api_key"),
    ("restricted rk_live_51H8abcdEFGHijkl0123", "51H8abcdEFGH", "api_key"),
    ("test mode sk_test_4eC39HqLyjWDarjtT1zdp7dc", "4eC39HqLyjWD", "api_key"),
    ("webhook whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "MfKQ9r8GKYqr", "api_key"),
    # AWS: key ids, named secrets, secrets after "AWS"/"secret", bare high-entropy secrets.
    ("id AKIAIOSFODNN7EXAMPLE ok", "AKIAIOSFODNN7EXAMPLE", "api_key"),
    ("key_id=AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE", "api_key"),
    (
        '"aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"',
        "wJalrXUtnFEMI",
        "api_key",
    ),
    ("AWS secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY here", "wJalrXUtnFEMI", "api_key"),
    ("use iPLeYBZ6KzJpTV1iOjkxkM4F8R98Fx4ZWOL+AFf/ for prod", "iPLeYBZ6KzJp", "secret"),
    ("creds%3DiPLeYBZ6KzJpTV1iOjkxkM4F8R98Fx4ZWOL+AFf/", "iPLeYBZ6KzJp", "secret"),
    # Other providers' keys.
    ("ghp_ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghij12", "ABCDEFGHIJKLMNOP", "api_key"),
    ("github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz", "11ABCDEFG0123", "api_key"),
    ("gitlab glpat-Ab3dEf6hIj9kLm2nOp5q", "Ab3dEf6hIj9k", "api_key"),
    ("slack xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOp", "1234567890", "api_key"),
    ("google AIzaSyA1234567890abcdefghijklmnopqrstuv", "SyA1234567890", "api_key"),
    ("hf hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789", "AbCdEfGhIjKl", "api_key"),
    ("npm npm_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789", "AbCdEfGhIjKl", "api_key"),
    # Tokens.
    (
        "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_Xg",
        "dozjgNryP4J3",
        "token",
    ),
    ("Authorization: Bearer abc123def456ghi789", "abc123def456", "token"),
    ('{"Authorization": "Bearer abc123def456ghi789"}', "abc123def456", "token"),
    ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA", "token"),
    ("Authorization: Token 9944b09199c62bcf9418ad846dd0e4bb", "9944b09199c6", "token"),
    ("Cookie: session=8f3a9c2e1b7d; theme=dark", "8f3a9c2e1b7d", "token"),
    # PEM private keys, multi-line, whatever the key type; a block cut off without its END.
    (
        f"key:\n-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}-----END RSA PRIVATE KEY-----\nok",
        "MIIEpAIBAAKCAQEA",
        "private_key",
    ),
    (
        f"-----BEGIN OPENSSH PRIVATE KEY-----\n{PEM_BODY}-----END OPENSSH PRIVATE KEY-----",
        "q2mVq8c1JmW1",
        "private_key",
    ),
    (
        f"-----BEGIN PRIVATE KEY-----\n{PEM_BODY}-----END PRIVATE KEY-----",
        "MIIEpAIBAAKCAQEA",
        "private_key",
    ),
    (
        f"-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n{PEM_BODY}-----END PGP PRIVATE KEY BLOCK-----",
        "q2mVq8c1JmW1",
        "private_key",
    ),
    (
        f"-----BEGIN ENCRYPTED PRIVATE KEY-----\n{PEM_BODY}",
        "MIIEpAIBAAKCAQEA",
        "private_key",
    ),
    # Passwords and other secrets named by a word, in prose and in JSON-ish text.
    ("Password: hunter2", "hunter2", "password"),
    ("my Password=Tr0ub4dor and more", "Tr0ub4dor", "password"),
    ('{"password": "correct horse battery staple"}', "correct horse", "password"),
    ("{'pwd': 'letmein'}", "letmein", "password"),
    ("passwd = s3cr3t!", "s3cr3t", "password"),
    ("DB_PASSWORD=qwerty123", "qwerty123", "password"),
    ('{\\"password\\": \\"hunter2\\"}', "hunter2", "password"),
    ("Passwort: Sommer2024", "Sommer2024", "password"),
    ("contraseña: gato1234", "gato1234", "password"),
    ("login?user=ann&pass=swordfish", "swordfish", "password"),
    ("postgres://admin:s3cr3tpw@db.internal:5432/app", "s3cr3tpw", "password"),
    ("secret: abcd1234efgh", "abcd1234efgh", "secret"),
    ("client_secret=9f8e7d6c5b4a3210", "9f8e7d6c5b4a", "secret"),
    ('"api_key": "acme_live_0a1b2c3d4e5f"', "0a1b2c3d4e5f", "secret"),
    ("token=ghx8h2k3j4l5m6n7", "ghx8h2k3j4l5", "secret"),
    # Emails, Unicode and URL-encoded ones included.
    ("write to jane.doe+shop@example.co.uk.", "jane.doe", "email"),
    ("jörg.müller@exämple.de", "jörg.müller", "email"),
    ("email me: 用户@例子.广告", "用户", "email"),
    ("δοκιμή@παράδειγμα.δοκιμή", "δοκιμή@", "email"),
    ("ann@xn--exmple-cua.de", "ann@", "email"),
    ("?email=ann.lee%40example.com&x=1", "ann.lee", "email"),
    # Phone numbers: libphonenumber finds international ones whatever their spacing.
    ("+33\u00a06\u00a012\u00a034\u00a056\u00a078", "12\u00a034", "phone"),
    ("call +44 (0) 20 7946 0958", "7946", "phone"),
    ("tel:+14155550132", "4155550132", "phone"),
    ("+7 495 123-45-67 (Moscow)", "123-45-67", "phone"),
    ("+86 138 0013 8000", "0013 8000", "phone"),
    ("+1-415-555-0132 ext. 12", "555-0132", "phone"),
    # Card numbers grouped by spaces, no-break spaces, dots or dashes.
    ("card 4111 1111 1111 1111 exp 12/27", "1111 1111", "card"),
    ("card 4111\u00a01111\u00a01111\u00a01111", "1111\u00a01111", "card"),
    ("card 4111\u202f1111\u202f1111\u202f1111", "1111\u202f1111", "card"),
    ("card 4111.1111.1111.1111", "1111.1111", "card"),
    ("card 5500-0055-5555-5559", "0055-5555", "card"),
    ("amex 3782 822463 10005", "822463", "card"),
    # IBANs: grouped, compact, with letters in the account part, grouped by no-break spaces.
    ("IBAN DE89 3704 0044 0532 0130 00, thanks", "0532 0130", "iban"),
    ("pay to GB82WEST12345698765432", "12345698765432", "iban"),
    ("FR14 2004 1010 0505 0001 3M02 606", "3M02", "iban"),
    ("NL91\u00a0ABNA\u00a00417\u00a01643\u00a000", "0417", "iban"),
    # US SSNs.
    ("SSN 123-45-6789", "6789", "national_id"),
    ("my social security number is 536 90 4399", "4399", "national_id"),
    ("ssn: 536904399", "536904399", "national_id"),
    # National ids with a checksum python-stdnum validates.
    ("codice fiscale RCCMNL83S18D969H", "RCCMNL83S18D969H", "national_id"),
    ("DNI 12345678Z", "12345678Z", "national_id"),
    ("NIE X1234567L", "X1234567L", "national_id"),
    ("NIR 1 85 05 78 006 084 91", "006 084", "national_id"),
    ("BSN 111222333", "111222333", "national_id"),
    ("Steuer-ID: 86095742719", "86095742719", "national_id"),
    ("Aadhaar 2345 6789 0124", "6789 0124", "national_id"),
    ("National Insurance number AB 12 34 56 C", "34 56", "national_id"),
]


@pytest.mark.parametrize(("text", "secret", "kind"), FOUND)
def test_recognised(text: str, secret: str, kind: str) -> None:
    redacted, counts = redact(text)
    assert secret not in redacted
    assert f"[REDACTED_{kind.upper()}]" in redacted
    assert counts[kind] >= 1
    assert counts == count_placeholders(redacted)


# Ordinary text that must come out unchanged.
KEPT = [
    "Hello! Can I return boots I wore once? I bought them on 2024-03-15 for $129.99.",
    "Order #100234567 shipped on 15.03.2024; invoice INV-2291, order ORD-2024-001234.",
    "order 111222333 and ticket 86095742719 and batch 2345 6789 0124",
    "In 2021 2022 2023 we sold 1 250 units, then 12 500 000 yen.",
    "commit da39a3ee5e6b4b0d3255bfef95601890afd80709 fixed it",
    "SHA1 DA39A3EE5E6B4B0D3255BFEF95601890AFD80709",
    "sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "request 123e4567-e89b-12d3-a456-426614174000 and 550e8400e29b41d4a716446655440000",
    "ids chatcmpl-BwQ3x8mZpN2rT5vY7aB9cD1eF3gH5iJ, resp_68a1f0c2d3e4, sess-41, fp_0ba0d124f1",
    "ThisIsAVeryLongCamelCaseIdentifier2024Ab",
    "see Users/JohnSmith/Documents/Projects/App12 for details",
    "Use a strong password: at least 12 characters, and never reuse a password.",
    "Password reset instructions were sent; the password is too short.",
    "the secret: consistency. Each token: a piece of a word. max token: 4096",
    "tokens: 4096, prompt_tokens=38, max_tokens=300",
    "pwd: ${DB_PASSWORD}, password: ********, password=<password>",
    "not an IBAN: GB00 WEST 1234 5698 7654 32; GB82 WEST 1234",
    "SSN-like but invalid: 666-12-3456, 900-12-3456, 123-00-4567",
    "4111 1111 1111 1112 fails the Luhn check, so does 4111\u00a01111\u00a01111\u00a01112",
    "version 1.2.3, IP 192.168.0.1, ZIP 90210, ISBN 978-3-16-148410-0",
    "growth +12.5% at +48.8566, 2.3522; score +2024",
    "user@localhost, @property, pkg@1.2.3",
    "uses sk-learn and scikit-learn; sk-this-is-not-a-key-at-all; task-1234567890abcdefghijk",
    "RCCMNL83S18D969X has the wrong check letter; so does 12345678A",
]


@pytest.mark.parametrize("text", KEPT)
def test_kept(text: str) -> None:
    assert redact(text) == (text, Counter())


def test_ibans_next_to_each_other_or_after_a_code() -> None:
    text, counts = redact(
        "DE89 3704 0044 0532 0130 00 GB82 WEST 1234 5698 7654 32; ref AB12 DE89370400440532013000"
    )
    assert text == "[REDACTED_IBAN] [REDACTED_IBAN]; ref AB12 [REDACTED_IBAN]"
    assert counts == Counter(iban=3)


def test_a_redactor_of_rules_of_ones_own() -> None:
    employee = RegexRule("employee_id", re.compile(r"\bEMP-[0-9]{5}\b"))
    redactor = Redactor([*default_rules(), employee])
    assert redactor("EMP-12345 wrote from ann@example.com") == (
        "[REDACTED_EMPLOYEE_ID] wrote from [REDACTED_EMAIL]",
        Counter(employee_id=1, email=1),
    )


# --------------------------------------------------------------------------------------------
# Counting what is written
# --------------------------------------------------------------------------------------------


def test_overlapping_findings_are_counted_once() -> None:
    # The password rule takes the value first; the email inside it is not counted again.
    text, counts = redact("Password: ann@example.com")
    assert text == "Password: [REDACTED_PASSWORD]"
    assert counts == Counter(password=1)
    # A card number inside a named secret, a key inside a URL with credentials.
    text, counts = redact("secret=4111111111111111abcdef and https://u:sk-abc123DEF456ghi789JKL@h")
    assert counts == count_placeholders(text) == Counter(secret=1, password=1)


def test_placeholders_already_in_the_text_are_not_counted() -> None:
    text, counts = redact("[REDACTED_EMAIL] wrote to bob@example.org")
    assert text == "[REDACTED_EMAIL] wrote to [REDACTED_EMAIL]"
    assert counts == Counter(email=1)


def test_counts_equal_the_placeholders_written_for_every_row() -> None:
    text = "\n".join(row[0] for row in FOUND)
    redacted, counts = redact(text)
    assert counts == count_placeholders(redacted)
    assert set(counts) <= set(REDACTION_KINDS)
    for _, secret, _ in FOUND:
        assert secret not in redacted


# --------------------------------------------------------------------------------------------
# Keys as well as values
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "kind"),
    [
        ("password", "password"),
        ("DB_PASSWORD", "password"),
        ("pwd", "password"),
        ("passwd", "password"),
        ("pass", "password"),
        ("api_key", "secret"),
        ("X-Api-Key", "secret"),
        ("openaiApiKey", "secret"),
        ("client_secret", "secret"),
        ("aws_secret_access_key", "secret"),
        ("private_key", "secret"),
        ("credentials", "secret"),
        ("authorization", "token"),
        ("Authorization", "token"),
        ("access_token", "token"),
        ("refresh-token", "token"),
        ("Cookie", "token"),
        ("prompt_tokens", None),
        ("max_tokens", None),
        ("password_reset", None),
        ("user_api_key_hash", None),
        ("session_id", None),
        ("bypass", None),
        ("endpoint", None),
    ],
)
def test_keys_that_name_a_secret(key: str, kind: str | None) -> None:
    assert secret_kind_of_key(key) == kind


def test_keys_are_redacted_and_named_secrets_replaced_whole() -> None:
    data: dict[str, Any] = {
        "ann@example.com": "vip",
        "sk-proj-abc123DEF456ghi789JKL012mno": "prod key",
        "password": "hunter2",
        "api_key": 12345678,
        "Authorization": "Bearer abc123def456ghi789",
        "tokens": ["a", "b"],
        "nested": {"db_password": "pw", "note": "call +44 20 7946 0958"},
        "access_tokens": "not a named secret: the key is plural",
        "refresh_token": ["t1", "t2"],
        "password_hint": None,
        "client_secret": "",
        "prompt_tokens": 38,
    }
    redacted, counts = redact_data(data)
    assert redacted == {
        "[REDACTED_EMAIL]": "vip",
        "[REDACTED_API_KEY]": "prod key",
        "password": "[REDACTED_PASSWORD]",
        "api_key": "[REDACTED_SECRET]",
        "Authorization": "[REDACTED_TOKEN]",
        "tokens": ["a", "b"],
        "nested": {"db_password": "[REDACTED_PASSWORD]", "note": "call [REDACTED_PHONE]"},
        "access_tokens": "not a named secret: the key is plural",
        "refresh_token": ["[REDACTED_TOKEN]", "[REDACTED_TOKEN]"],
        "password_hint": None,
        "client_secret": "",
        "prompt_tokens": 38,
    }
    assert counts == count_placeholders(json.dumps(redacted))
    assert counts == Counter(email=1, api_key=1, password=2, secret=1, token=3, phone=1)


def test_keys_that_become_equal_keep_both_values() -> None:
    redacted, counts = redact_data({"ann@example.com": 1, "bob@example.org": 2})
    assert redacted == {"[REDACTED_EMAIL]": 1, "[REDACTED_EMAIL] (2)": 2}
    assert counts == Counter(email=2)


# --------------------------------------------------------------------------------------------
# The import, end to end
# --------------------------------------------------------------------------------------------


def write_log(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def run(capsys: Capture, *args: str | Path) -> tuple[int, str, str]:
    status = main([str(a) for a in args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_import_redacts_metadata_keys_and_named_values(tmp_path: Path, capsys: Capture) -> None:
    log = write_log(
        tmp_path / "log.jsonl",
        [
            {
                "input": "My IBAN is DE89 3704 0044 0532 0130 00 and my SSN 123-45-6789",
                "output": "Noted. Password: hunter2 is weak.",
                "metadata": {
                    "ann@example.com": "vip",
                    "password": "hunter2",
                    "headers": {"X-Api-Key": "k-1", "Accept": "json"},
                },
            }
        ],
    )
    out = tmp_path / "out.jsonl"
    status, stdout, _ = run(capsys, log, "-o", out)
    assert status == 0
    text = out.read_text(encoding="utf-8")
    for secret in ("ann@example.com", "hunter2", "k-1", "0532 0130", "6789"):
        assert secret not in text
    (case,) = load_cases(out)
    assert case.user == "My IBAN is [REDACTED_IBAN] and my SSN [REDACTED_NATIONAL_ID]"
    assert case.reference == "Noted. Password: [REDACTED_PASSWORD] is weak."
    assert case.metadata["[REDACTED_EMAIL]"] == "vip"
    assert case.metadata["password"] == "[REDACTED_PASSWORD]"
    assert case.metadata["headers"] == {"X-Api-Key": "[REDACTED_SECRET]", "Accept": "json"}
    assert (
        "redacted: 2 passwords, 1 secret, 1 email address, 1 IBAN, 1 national id number" in stdout
    )


def test_only_what_is_written_is_counted(tmp_path: Path, capsys: Capture) -> None:
    records = [
        # user-id fields are dropped from the case: their redactions are not written
        {"input": "hello", "output": "hi", "user_email": "ann@example.com"},
        {"input": "reset", "output": "ok", "metadata": {"customer": {"email": "b@example.org"}}},
        # the same conversation twice: one case, one email written
        {"input": "I am carol@example.net", "output": "ok"},
        {"input": "I am dave@example.net", "output": "ok"},
    ]
    out = tmp_path / "out.jsonl"
    status, stdout, _ = run(capsys, write_log(tmp_path / "log.jsonl", records), "-o", out)
    assert status == 0
    assert "removed 1 duplicate" in stdout
    assert "redacted: 1 email address\n" in stdout
    written = count_placeholders(out.read_text(encoding="utf-8"))
    provenance = json.loads(out.with_suffix(".import.json").read_text(encoding="utf-8"))
    assert provenance["redactions"]["email"] == written["email"] == 1


def test_counts_leave_out_records_not_sampled(tmp_path: Path, capsys: Capture) -> None:
    records = [{"input": f"q{i} from u{i}@example.com", "output": "ok"} for i in range(10)]
    out = tmp_path / "out.jsonl"
    status, stdout, _ = run(
        capsys, write_log(tmp_path / "log.jsonl", records), "-o", out, "--size", "3"
    )
    assert status == 0
    assert "redacted: 3 email addresses" in stdout
    assert count_placeholders(out.read_text(encoding="utf-8")) == Counter(email=3)


def test_private_key_in_a_logged_message(tmp_path: Path, capsys: Capture) -> None:
    pem = f"-----BEGIN EC PRIVATE KEY-----\n{PEM_BODY}-----END EC PRIVATE KEY-----"
    log = write_log(
        tmp_path / "log.jsonl", [{"input": f"Why does this fail?\n{pem}\n", "output": "ok"}]
    )
    out = tmp_path / "out.jsonl"
    status, stdout, _ = run(capsys, log, "-o", out)
    assert status == 0
    assert "MIIEpAIBAAKCAQEA" not in out.read_text(encoding="utf-8")
    assert load_cases(out)[0].user == "Why does this fail?\n[REDACTED_PRIVATE_KEY]"
    assert "redacted: 1 private key" in stdout


# --------------------------------------------------------------------------------------------
# --redactor module:function
# --------------------------------------------------------------------------------------------

TEAM_RULES = """
import re

ACME = re.compile(r"ACME-[0-9]{6}")
NOT_A_FUNCTION = 42


def redact(text):
    return ACME.sub("[REDACTED_CUSTOMER_ID]", text)


def names(text):
    return text.replace("Ann Lee", "[REDACTED_NAME]"), {"name": 99}


def shout(text):
    return text.upper()


def broken(text):
    raise ValueError("no rules today")


def wrong(text):
    return len(text)


class Rules:
    @staticmethod
    def redact(text):
        return text.replace("secret-project", "[REDACTED_PROJECT]")
"""


@pytest.fixture
def team(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A team's rules module in the current directory, and a log that needs them."""
    (tmp_path / "team_rules.py").write_text(TEAM_RULES, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "team_rules", raising=False)
    return write_log(
        tmp_path / "log.jsonl",
        [
            {
                "input": "Account ACME-123456 (Ann Lee, ann@example.com) on secret-project",
                "output": "Done for ACME-123456.",
                "metadata": {"account": "ACME-654321"},
            }
        ],
    )


def test_team_redactor_runs_after_the_built_in_rules(
    team: Path, tmp_path: Path, capsys: Capture
) -> None:
    out = tmp_path / "out.jsonl"
    args = ["--redactor", "team_rules:redact", "--redactor", "team_rules:names"]
    status, stdout, err = run(
        capsys, team, "-o", out, *args, "--redactor", "team_rules:Rules.redact"
    )
    assert status == 0, err
    (case,) = load_cases(out)
    assert case.user == (
        "Account [REDACTED_CUSTOMER_ID] ([REDACTED_NAME], [REDACTED_EMAIL]) on [REDACTED_PROJECT]"
    )
    assert case.reference == "Done for [REDACTED_CUSTOMER_ID]."
    assert case.metadata["account"] == "[REDACTED_CUSTOMER_ID]"
    # Counted by the placeholders written, whatever counts a function returns.
    assert "redacted: 1 email address, 3 customer ids, 1 name, 1 project" in stdout
    provenance = json.loads(out.with_suffix(".import.json").read_text(encoding="utf-8"))
    assert provenance["options"]["redactors"] == [
        "team_rules:redact",
        "team_rules:names",
        "team_rules:Rules.redact",
    ]
    assert "--redactor team_rules:redact --redactor team_rules:names" in provenance["command"]
    assert provenance["redactions"]["customer_id"] == 3
    assert provenance["redactions"]["name"] == 1
    assert list(provenance["redactions"])[: len(REDACTION_KINDS)] == list(REDACTION_KINDS)


def test_team_redactor_through_the_llmregress_command(
    team: Path, tmp_path: Path, capsys: Capture
) -> None:
    out = tmp_path / "out.jsonl"
    status = cli.main(["import", str(team), "-o", str(out), "--redactor", "team_rules:redact"])
    assert status == 0, capsys.readouterr().err
    assert "ACME-123456" not in out.read_text(encoding="utf-8")


def test_team_redactor_from_the_console_script(team: Path, tmp_path: Path) -> None:
    """The console script's sys.path holds its own directory, not the project's."""
    script = Path(sys.executable).parent / "llmregress"
    if not script.exists():
        pytest.skip("the llmregress console script is not installed")
    out = tmp_path / "out.jsonl"
    done = subprocess.run(
        [str(script), "import", str(team), "-o", str(out), "--redactor", "team_rules:redact"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "ACME-123456" not in out.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("team_rules", "--redactor 'team_rules': expected MODULE:FUNCTION"),
        ("team_rules:", "--redactor 'team_rules:': expected MODULE:FUNCTION"),
        (
            "no_such_module_xyz:redact",
            "--redactor 'no_such_module_xyz:redact': cannot import 'no_such_module_xyz': "
            "ModuleNotFoundError",
        ),
        ("team_rules:missing", "--redactor 'team_rules:missing': 'team_rules' has no attribute"),
        ("team_rules:NOT_A_FUNCTION", "'NOT_A_FUNCTION' is a int, not a function"),
    ],
)
def test_bad_redactor_spec_is_a_usage_error(
    team: Path, tmp_path: Path, capsys: Capture, spec: str, message: str
) -> None:
    out = tmp_path / "out.jsonl"
    status, _, err = run(capsys, team, "-o", out, "--redactor", spec)
    assert status == 2
    assert message in err
    assert not out.exists()


def test_redactor_with_no_redact_is_a_usage_error(
    team: Path, tmp_path: Path, capsys: Capture
) -> None:
    status, _, err = run(
        capsys, team, "-o", tmp_path / "o.jsonl", "--no-redact", "--redactor", "team_rules:redact"
    )
    assert status == 2
    assert "--redactor and --no-redact cannot be combined" in err


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("team_rules:broken", "--redactor team_rules:broken raised ValueError: no rules today"),
        ("team_rules:wrong", "--redactor team_rules:wrong returned int, expected str"),
    ],
)
def test_failing_redactor_stops_the_import(
    team: Path, tmp_path: Path, capsys: Capture, spec: str, message: str
) -> None:
    out = tmp_path / "out.jsonl"
    status, _, err = run(capsys, team, "-o", out, "--redactor", spec)
    assert status == 1
    assert message in err
    assert f"(on {team}:1)" in err
    assert not out.exists()


def test_load_redactor_returns_a_text_function(team: Path) -> None:
    function = load_redactor("team_rules:shout")
    assert function("abc") == "ABC"
    redactor = Redactor().with_functions([function])
    assert redactor("abc") == ("ABC", Counter())
    with pytest.raises(RedactorSpecError, match="expected MODULE:FUNCTION"):
        load_redactor(":redact")


# --------------------------------------------------------------------------------------------
# Cost
# --------------------------------------------------------------------------------------------


def test_loading_the_plugin_or_the_importer_imports_no_redaction_library() -> None:
    code = (
        "import sys\n"
        "import pytest_llmregress.plugin, pytest_llmregress.authoring.importer\n"
        "from pytest_llmregress.authoring.redaction import redact\n"
        "redact('an email: ann@example.com, a date: 2024-03-15')\n"
        "print(sorted(m for m in ('phonenumbers', 'stdnum') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
