"""Web config: bcrypt hashes checked at load with the field path; basic auth costs the same for unknown users."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import bcrypt
import pytest

from exporter.config import ConfigError
from exporter.http import Router
from exporter.snapshot import Store
from exporter.webconfig import BCRYPT_DEFAULT_MAX_COST, BasicAuth, load_web_config

PASSWORD = b"s3cret-scrape-password"
HASH = bcrypt.hashpw(PASSWORD, bcrypt.gensalt(rounds=4)).decode()


def header(user: str, password: bytes) -> str:
    return "Basic " + base64.b64encode(user.encode() + b":" + password).decode()


class RecordingChecker:
    """bcrypt.checkpw, recording which hash each call compared against."""

    def __init__(self) -> None:
        self.hashes: list[bytes] = []

    def __call__(self, password: bytes, hashed: bytes) -> bool:
        self.hashes.append(hashed)
        return bcrypt.checkpw(password, hashed)


def test_an_unknown_user_is_checked_against_the_dummy_hash() -> None:
    checker = RecordingChecker()
    auth = BasicAuth({"prometheus": HASH}, checker=checker)
    assert not auth.check(header("nobody", PASSWORD))
    assert checker.hashes == [auth.dummy_hash]
    assert auth.dummy_hash[:7] == HASH[:7].encode()  # same algorithm and cost as the real hash
    assert not auth.check(header("prometheus", b"wrong"))
    assert checker.hashes == [auth.dummy_hash, HASH.encode()]  # one check each at one cost: no padding needed


def test_the_dummy_hash_has_the_highest_configured_cost() -> None:
    costly = bcrypt.hashpw(PASSWORD, bcrypt.gensalt(rounds=6)).decode()
    auth = BasicAuth({"a": HASH, "b": costly})
    assert auth.dummy_hash.startswith(b"$2b$06$")


def _work(hashes: list[bytes]) -> int:
    """bcrypt's work for checks against `hashes`, in units of one key expansion (2**cost each)."""
    return sum(2 ** int(hashed[4:6]) for hashed in hashes)


def test_every_check_costs_one_check_at_the_highest_configured_cost() -> None:
    # Issue 26: a wrong password for a cost-4 user took 2.2 ms, an unknown user 62.6 ms (dummy at cost 12).
    cheap, middle, costly = (bcrypt.hashpw(PASSWORD, bcrypt.gensalt(rounds=r)).decode() for r in (4, 5, 7))
    checker = RecordingChecker()
    auth = BasicAuth({"cheap": cheap, "middle": middle, "costly": costly}, checker=checker)
    assert auth.highest_cost == 7 and auth.dummy_hash.startswith(b"$2b$07$")
    cases = [
        ("nobody", PASSWORD, False),
        ("cheap", b"wrong", False),
        ("middle", b"wrong", False),
        ("costly", b"wrong", False),
        ("cheap", PASSWORD, True),  # the first success is padded too: it looks like a failure
        ("cheap", PASSWORD + b"x" * 100, False),
    ]
    for user, password, expected in cases:
        checker.hashes.clear()
        assert auth.check(header(user, password)) is expected
        assert _work(checker.hashes) == 2**7, (user, [h[:7] for h in checker.hashes])


def test_verified_credentials_are_remembered() -> None:
    checker = RecordingChecker()
    auth = BasicAuth({"prometheus": HASH}, checker=checker)
    for _ in range(20):
        assert auth.check(header("prometheus", PASSWORD))
    assert checker.hashes == [HASH.encode()]


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "Bearer abc",
        "Basic !!!",
        "Basic é",  # non-ASCII in the header: refused, no exception
        "Basic " + base64.b64encode(b"\xff\xfe:x").decode(),  # not UTF-8
        header("prometheus", b"nul\x00byte"),  # bcrypt refuses NUL bytes
    ],
)
def test_malformed_credentials_are_refused_without_an_exception(value: str | None) -> None:
    assert not BasicAuth({"prometheus": HASH}).check(value)


def test_an_over_long_password_costs_one_check_and_fails() -> None:
    checker = RecordingChecker()
    auth = BasicAuth({"prometheus": HASH}, checker=checker)
    assert not auth.check(header("prometheus", PASSWORD + b"x" * 100))  # bcrypt reads at most 72 bytes
    assert checker.hashes == [auth.dummy_hash]


def _load(tmp_path: Path, text: str) -> str:
    path = tmp_path / "web.yml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_web_config(path)
    assert len(info.value.problems) == 1
    return info.value.problems[0]


@pytest.mark.parametrize(
    ("hashed", "expected"),
    [
        ("plain-text-password", "must be a bcrypt hash"),
        (HASH[:-1], "must be a bcrypt hash"),  # one character short
        ("$1$" + HASH[3:], "must be a bcrypt hash"),  # MD5-crypt prefix
        (HASH.replace("$04$", "$03$"), "bcrypt cost 3 is below 4"),
        (HASH.replace("$04$", "$15$"), "bcrypt cost 15 is above 14"),
        (HASH.replace("$04$", "$99$"), "bcrypt cost 99 is above 31"),
    ],
)
def test_bad_hashes_are_refused_at_load_with_the_field_path(tmp_path: Path, hashed: str, expected: str) -> None:
    problem = _load(tmp_path, f"basic_auth_users:\n  alice: '{hashed}'\n")
    assert f"web.yml: basic_auth_users.alice: {expected}" in problem
    assert hashed not in problem  # the hash is never echoed


def test_a_higher_cost_is_allowed_only_explicitly(tmp_path: Path) -> None:
    costly = HASH.replace("$04$", "$15$")
    path = tmp_path / "web.yml"
    path.write_text(f"bcrypt_max_cost: 15\nbasic_auth_users:\n  alice: '{costly}'\n")
    assert load_web_config(path).basic_auth_users == {"alice": costly}
    assert "bcrypt_max_cost" in _load(tmp_path, "bcrypt_max_cost: 40\n")
    assert BCRYPT_DEFAULT_MAX_COST == 14


def test_a_user_name_with_a_colon_is_refused(tmp_path: Path) -> None:
    assert "basic_auth_users.a:b: a user name cannot contain ':'" in _load(
        tmp_path, f"basic_auth_users:\n  'a:b': '{HASH}'\n"
    )


def test_a_web_config_that_is_not_a_regular_file_or_a_bomb_is_refused(tmp_path: Path) -> None:
    import os

    from exporter.config import ConfigError
    from exporter.webconfig import load_web_config

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(
        "a: &a [x, x, x, x, x, x, x, x, x]\n"
        + "".join(
            f"{n}: &{n} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
            for p, n in zip("abcdefgh", "bcdefghi", strict=True)
        )
    )
    for path in (fifo, bomb, tmp_path):
        with pytest.raises(ConfigError):
            load_web_config(path)


def test_health_paths_answer_without_credentials_only_when_the_web_config_says_so(tmp_path: Path) -> None:
    class Body:
        def parts(self, gzip: bool = False) -> tuple[bytes, ...]:
            return (b"m 1\n",)

    path = tmp_path / "web.yml"
    path.write_text(f"basic_auth_users:\n  prometheus: '{HASH}'\nhealth_without_auth: true\n")
    web = load_web_config(path)
    assert web.health_without_auth
    auth = BasicAuth(web.basic_auth_users)
    closed = Router(Store(time.time), Body(), auth=auth)
    opened = Router(Store(time.time), Body(), auth=auth, health_without_auth=True)
    nobody: dict[str, str] = {}
    for path_ in ("/healthz", "/readyz", "/metrics", "/"):
        assert closed.handle("GET", path_, nobody, lambda n: b"").status == 401
    assert opened.handle("GET", "/healthz", nobody, lambda n: b"").status == 200
    assert opened.handle("GET", "/readyz?x=1", nobody, lambda n: b"").status == 503  # open, and not ready yet
    for path_ in ("/metrics", "/", "/api/status", "/healthz/../metrics"):
        assert opened.handle("GET", path_, nobody, lambda n: b"").status == 401
    assert opened.handle("POST", "/healthz", nobody, lambda n: b"").status == 401  # only reads are open
    signed = {"Authorization": header("prometheus", PASSWORD)}
    assert opened.handle("GET", "/metrics", signed, lambda n: b"").status == 200
