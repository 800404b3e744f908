"""What a load point sends and says (issue 21, items 14 and 22): ``--extra-body`` may not set the
fields streambench sends itself; ``--request-rate …,inf`` sends the ``inf`` point's requests at
once (not one at a time); without ``--tokenizer`` a length target the server counts otherwise is
said once, with the fix; the opening line states the expected time, the worst-case bound only
with ``--verbose``. Against the capacity stub of ``test_endpoint_load`` (its own process)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from test_endpoint_load import cli, stub, url  # noqa: F401 - stub is a fixture

from streambench.endpoint.load import LoadSettings
from streambench.endpoint.spec import OWNED_BODY, EndpointError, EndpointSpec
from streambench.endpoint.sweeps import duration_text

BASE = "http://127.0.0.1:9/v1"  # nothing listens: a refusal must come before any request


def opening(stdout: str) -> str:
    """The opening line (and what follows), however the terminal width wrapped it."""
    return " ".join(stdout.split())


# ------------------------------------------------------------------------- --extra-body (14)
@pytest.mark.parametrize("key", sorted(OWNED_BODY))
def test_extra_body_may_not_set_an_owned_field(key):
    with pytest.raises(EndpointError, match=f"--extra-body .*'{key}'"):
        EndpointSpec(url=BASE, model="m", extra_body={key: 1, "top_k": 1}).validate()


def test_extra_body_keeps_server_options():
    body = {"top_k": 1, "temperature": 0.7, "generation_config": '{"min_new_tokens": 4}'}
    assert EndpointSpec(url=BASE, model="m", extra_body=body).validate().extra_body == body


@pytest.mark.parametrize(
    "body, named",
    [
        ({"model": "other"}, ["'model'", "--model"]),
        ({"max_tokens": 4096, "stream": False}, ["'max_tokens'", "--in-out", "'stream'"]),
        ({"messages": [{"role": "user", "content": "x"}]}, ["'messages'", "--prompt"]),
    ],
)
def test_the_command_refuses_owned_extra_body_fields_with_exit_2(body, named):
    res = cli(BASE, "--model", "m", "--extra-body", json.dumps(body), "--requests", "1")
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2, res.stderr
    assert len(lines) == 1 and lines[0].startswith("streambench: error: --extra-body"), lines
    for needle in named:
        assert needle in lines[0], (needle, lines[0])


# ------------------------------------------------------------------- inf, lengths, time (22)
def test_an_inf_rate_sends_every_request_at_once(stub, tmp_path):  # noqa: F811
    out = tmp_path / "r.json"
    # each request holds a slot 0.5 s before its first token: one at a time, 6 take >= 3 s
    res = cli(url(stub, "service=0.5"), "--model", "m", "--in-out", "8-3", "--requests", "6",
              "--warmup", "0", "--request-rate", "200,inf", "-o", str(out))  # fmt: skip
    assert res.returncode == 0, res.stderr
    entries = json.loads(out.read_text())["configurations"]
    got = [(e["settings"].get("request_rate"), e["settings"]["concurrency"]) for e in entries]
    assert got == [(200.0, 64), (None, 64)]
    assert entries[1]["label"].endswith("c64"), entries[1]["label"]
    assert entries[1]["duration_s"] < 2.0, entries[1]["duration_s"]  # at once: ~0.5 s
    # the stub counts 4 prompt tokens for 8 words: said once for the two points, with the fix
    assert res.stderr.count("--tokenizer") == 1, res.stderr
    assert "prompts of 8 words are 4 tokens for the server" in res.stderr
    first = opening(res.stdout)
    assert "concurrency 64, 200,inf requests/s; about 0.03 s plus 1 point(s) as fast as the server "
    "answers" in first, first
    assert "at most" not in first, first


def test_without_a_rate_requests_go_one_at_a_time_and_the_bound_only_with_verbose(
    stub,  # noqa: F811
    tmp_path,
):
    out = tmp_path / "r.json"
    res = cli(url(stub, "service=0.01"), "--model", "m", "--in-out", "4-3", "--requests", "2",
              "--warmup", "0", "--timeout", "7", "-v", "-o", str(out))  # fmt: skip
    assert res.returncode == 0, res.stderr
    (entry,) = json.loads(out.read_text())["configurations"]
    assert entry["settings"]["concurrency"] == 1
    assert "--tokenizer" not in res.stderr, res.stderr  # 4 words, 4 tokens: the target met
    first = opening(res.stdout)
    assert "as fast as the server answers; at most" in first, first
    assert "--timeout 7 s" in first, first


def test_the_expected_duration_counts_what_the_load_sets():
    rate = EndpointSpec(url=BASE, model="m", requests=10, request_rate=2.0).validate()
    paced = EndpointSpec(url=BASE, model="m", requests=10, concurrency=64).validate()
    timed = EndpointSpec(
        url=BASE, model="m", request_rate=2.0, load=LoadSettings(duration_s=30.0, ramp_up_s=5.0)
    ).validate()
    assert rate.expected_duration_s == 5.0 and paced.expected_duration_s is None
    assert timed.expected_duration_s == 35.0
    assert duration_text([rate, timed], None, False) == "about 40 s"
    text = duration_text([rate, paced], None, True)
    bound = rate.max_duration_s + paced.max_duration_s
    assert text == (
        f"about 5 s plus 1 point(s) as fast as the server answers; at most {bound:g} s "
        "(every request cut at --timeout 60 s)"
    )
    search = SimpleNamespace(settings=SimpleNamespace(max_points=12))  # a capacity search
    assert duration_text([rate], search, False) == ""  # each point's rate is not known yet
    assert duration_text([timed], search, False) == "about 35 s per point"
    assert duration_text([rate], search, True).startswith(f"at most {12 * rate.max_duration_s:g} s")
