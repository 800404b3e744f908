"""``streambench endpoint --multi-turn`` against the stub server of ``tests/test_endpoint.py``
(its own process on 127.0.0.1; it records every request body): the history really is sent,
with the server's replies as they were streamed; every record has its session and turn; the
table and JSON show TTFT by turn; bad conversation files are refused with one line, exit 2,
before anything is sent.

Runtime: ~35 s (2 cores, shared; the --tokenizer test ~11 s of it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from test_endpoint import StubProcess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def stub():
    s = StubProcess()
    yield s
    s.close()


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": ROOT}
    env.pop("OPENAI_API_KEY", None)
    return subprocess.run(
        [sys.executable, "-m", "streambench", "endpoint", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=ROOT,
    )


CONVERSATIONS = [
    {
        "conversations": [
            {"from": "system", "value": "Be brief."},
            {"from": "human", "value": "first question of A"},
            {"from": "gpt", "value": "a reference reply that is never sent"},
            {"from": "human", "value": "second question of A"},
            {"from": "gpt", "value": "ref"},
            {"from": "human", "value": "third question of A"},
        ]
    },
    {
        "conversations": [
            {"from": "human", "value": "first question of B"},
            {"from": "gpt", "value": "ref"},
            {"from": "human", "value": "second question of B"},
        ]
    },
]


def _write(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _sessions_of(seen: list[dict]) -> dict[str, list[list[dict]]]:
    """Chat bodies the stub received, grouped by the conversation's first user message."""
    out: dict[str, list[list[dict]]] = {}
    for s in seen:
        msgs = s["body"].get("messages")
        if not msgs or s["body"].get("max_tokens") == 1:  # a probe
            continue
        first_user = next(m["content"] for m in msgs if m["role"] == "user")
        out.setdefault(first_user, []).append(msgs)
    return out


def test_history_carries_the_servers_replies_and_records_session_and_turn(stub, tmp_path):
    stub.reset()
    conv = _write(tmp_path, "conv.json", json.dumps(CONVERSATIONS))
    out = tmp_path / "r.json"
    scenario = "ttft=0.02;gap=0.002"
    # outputs of 3 tokens: the stub replies "ab " per token, so a reply is "ab ab ab "
    p = cli(stub.url(scenario), "--model", "m", "--chat", "--prompts", conv, "--multi-turn",
            "--output-len", "3", "--concurrency", "2", "--warmup", "0", "-o", str(out))  # fmt: skip
    assert p.returncode == 0, p.stderr
    bodies = _sessions_of(stub.seen)
    a = sorted(bodies["first question of A"], key=len)
    assert [len(m) for m in a] == [2, 4, 6]  # system + user, then + reply + next user ...
    assert a[2] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "first question of A"},
        {"role": "assistant", "content": "ab ab ab "},
        {"role": "user", "content": "second question of A"},
        {"role": "assistant", "content": "ab ab ab "},
        {"role": "user", "content": "third question of A"},
    ]
    assert "a reference reply that is never sent" not in json.dumps(stub.seen)
    b = sorted(bodies["first question of B"], key=len)
    assert [m[-1]["content"] for m in b] == ["first question of B", "second question of B"]
    assert b[1][1] == {"role": "assistant", "content": "ab ab ab "}
    # every measured record: its session and turn; turns of a session in order
    entry = json.loads(out.read_text())["configurations"][0]
    measured = [r for r in entry["requests"] if not r["warmup"]]
    assert sorted((r["session"], r["turn"]) for r in measured) == [
        (0, 1), (0, 2), (0, 3), (1, 1), (1, 2)
    ]  # fmt: skip
    assert len({r["index"] for r in measured}) == 5
    by_session = {}
    for r in measured:
        by_session.setdefault(r["session"], []).append((r["sent_s"], r["turn"]))
    for turns in by_session.values():  # a turn is sent only after the one before it
        assert [t for _, t in sorted(turns)] == sorted(t for _, t in turns)
    sessions = entry["aggregates"]["sessions"]
    assert sessions["sessions"] == 2 and sessions["turns_sent"] == 5
    assert sessions["turns_not_sent"] == 0 and sessions["prefix_cache_hit_rate"] is None
    rows = {row["turn"]: row for row in sessions["ttft_by_turn"]}
    assert [rows[k]["requests"] for k in (1, 2, 3)] == [2, 2, 1]
    for k in (1, 2, 3):  # the stub's TTFT is 20 ms; never less on the client's clock
        assert rows[k]["ttft_s"]["min"] >= 0.0195
    assert "TTFT by turn (ms)" in p.stdout and "2 sessions · 5 turns sent" in p.stdout


def test_sessions_run_concurrently_and_cycle(stub, tmp_path):
    """4 sessions over 2 conversations at concurrency 2: two sessions in flight at once (the
    stub saw 2 requests at the same time), 10 turns in all."""
    stub.reset()
    conv = _write(tmp_path, "conv.json", json.dumps(CONVERSATIONS))
    out = tmp_path / "r.json"
    scenario = "ttft=0.15;gap=0.001;conc"
    p = cli(stub.url(scenario), "--model", "m", "--chat", "--prompts", conv, "--multi-turn",
            "--output-len", "2", "--concurrency", "2", "--requests", "4", "--warmup", "0",
            "-o", str(out))  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert stub.max_in_flight(scenario) == 2
    entry = json.loads(out.read_text())["configurations"][0]
    measured = [r for r in entry["requests"] if not r["warmup"]]
    assert len(measured) == 10 and {r["session"] for r in measured} == {0, 1, 2, 3}


def test_jsonl_messages_with_several_user_turns(stub, tmp_path):
    stub.reset()
    line = {
        "messages": [
            {"role": "user", "content": "u1"},
            {"role": "assistant", "content": "file reply"},
            {"role": "user", "content": "u2"},
        ]
    }
    conv = _write(tmp_path, "c.jsonl", json.dumps(line) + "\n")
    p = cli(stub.url("ttft=0.01;gap=0.001"), "--model", "m", "--chat", "--prompts", conv,
            "--multi-turn", "--warmup", "0", "--output-len", "2")  # fmt: skip
    assert p.returncode == 0, p.stderr
    last = max(_sessions_of(stub.seen)["u1"], key=len)
    assert last == [
        {"role": "user", "content": "u1"},
        {"role": "assistant", "content": "ab ab "},
        {"role": "user", "content": "u2"},
    ]


def test_a_failed_turn_ends_its_session(stub, tmp_path):
    """A stream cut mid-reply: that turn fails and the session's later turns are not sent."""
    stub.reset()
    conv = _write(tmp_path, "conv.json", json.dumps(CONVERSATIONS[:1]))
    out = tmp_path / "r.json"
    p = cli(stub.url("ttft=0.01;gap=0.001;cut=1"), "--model", "m", "--chat", "--prompts", conv,
            "--multi-turn", "--warmup", "0", "--force-output", "off", "--output-len", "3",
            "-o", str(out))  # fmt: skip
    assert p.returncode == 1, p.stderr
    entry = json.loads(out.read_text())["configurations"][0]
    measured = [r for r in entry["requests"] if not r["warmup"]]
    assert [(r["session"], r["turn"], r["ok"]) for r in measured] == [(0, 1, False)]
    assert len([s for s in stub.seen if s["body"].get("messages")]) == 1


@pytest.mark.parametrize(
    ("name", "text", "expect"),
    [
        ("c.json", "{not json", "not valid JSON"),
        ("c.json", json.dumps({"conversations": []}), "not the ShareGPT layout"),
        ("c.json", json.dumps([{"conversations": [{"from": "gpt", "value": "x"}]}]),
         "(item 0): no user turn"),
        ("c.json", json.dumps([{"conversations": [{"from": "human", "value": 5}]}]),
         "(item 0): turn 0 is not a text"),
        ("c.jsonl", '{"messages": [{"role": "user", "content": "a"}]}\n[1]\n',
         '(line 2): needs "messages"'),
        ("c.txt", "hello\n", "reads .json (ShareGPT) or .jsonl"),
        ("c.jsonl", '{"messages": [{"role": "wizard", "content": "a"}]}\n',
         "(line 1): messages[0] is not an object with a role"),
        ("c.json", json.dumps([{"conversations": [{"from": "human", "value": "q"}] * 1001}]),
         "1001 user turns; at most 1000"),
    ],
)  # fmt: skip
def test_bad_conversation_files_exit_2_before_sending(stub, tmp_path, name, text, expect):
    stub.reset()
    conv = _write(tmp_path, name, text)
    p = cli(stub.url(), "--model", "m", "--chat", "--prompts", conv, "--multi-turn",
            "--output-len", "2")  # fmt: skip
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and expect in lines[0] and conv in lines[0], p.stderr
    assert stub.seen == []


def test_multi_turn_option_combinations_exit_2(stub, tmp_path):
    conv = _write(tmp_path, "conv.json", json.dumps(CONVERSATIONS))
    for args, expect in (
        (("--prompts", conv, "--multi-turn"), "add --chat"),
        (("--chat", "--multi-turn"), "--multi-turn plays the conversations of --prompts"),
        (("--chat", "--prompts", conv, "--multi-turn"), "give --tokenizer DIR"),  # from-data
    ):
        p = cli(stub.url(), "--model", "m", *args)
        assert p.returncode == 2 and expect in p.stderr, p.stderr


def test_from_data_output_lengths_per_turn_with_a_tokenizer(stub, tmp_path):
    """ShareGPT's default output length is from-data: each turn asks for as many tokens as the
    file's reply to it has (the tokenizer's count); a last turn without a reply is natural."""
    from streambench.tiny import build_tokenizer

    stub.reset()
    tok = build_tokenizer("printable")
    tok.save_pretrained(tmp_path / "tok")
    conv = _write(tmp_path, "conv.json", json.dumps(CONVERSATIONS[:1]))
    p = cli(stub.url("ttft=0.01;gap=0.001"), "--model", "m", "--chat", "--prompts", conv,
            "--multi-turn", "--tokenizer", str(tmp_path / "tok"), "--warmup", "0",
            "--force-output", "on", "--output-len", "from-data")  # fmt: skip
    assert p.returncode == 0, p.stderr
    bodies = sorted((s["body"] for s in stub.seen), key=lambda b: len(b["messages"]))
    asked = [(b["max_tokens"], "min_tokens" in b or "ignore_eos" in b) for b in bodies]
    replies = ["a reference reply that is never sent", "ref"]
    assert asked == [(len(r), True) for r in replies] + [(512, False)]  # natural: the cap


def test_prefix_cache_hook_shows_in_the_table():
    """The hook ``--server-metrics`` fills: the hit rate written beside the TTFT by turn, and
    printed in the table's sessions line."""
    import io

    from rich.console import Console

    from streambench.endpoint.sessions import set_prefix_cache_hit_rate, turn_table

    st = {"n": 2, "mean": 0.01, "median": 0.01, "p90": 0.01, "p99": 0.01, "stdev": 0.0}
    row = {"turn": 1, "requests": 2, "failed": 0, "ttft_s": st, "prompt_tokens_median": 9}
    sessions = {"sessions": 2, "turns_sent": 2, "turns_not_sent": 0, "ttft_by_turn": [row],
                "prefix_cache_hit_rate": None}  # fmt: skip
    entry = {"aggregates": {"sessions": sessions}}

    def shown() -> str:
        console = Console(file=io.StringIO(), width=200, record=True)
        for part in turn_table(entry["aggregates"]["sessions"]):
            console.print(part)
        return console.export_text()

    assert "prefix-cache" not in shown()
    set_prefix_cache_hit_rate(entry, 0.625)
    assert sessions["prefix_cache_hit_rate"] == 0.625
    assert "prefix-cache hit rate 62.5% (server metrics)" in shown()


def test_multi_turn_with_server_metrics_reports_the_prefix_cache_hit_rate(stub, tmp_path):
    """End to end: ``--multi-turn --server-metrics`` against the stub, whose ``/metrics`` page
    counts 25 prefix-cache hits per 100 queries: the sessions' aggregate and the table carry
    the server's rate (the real-server check is in ``tests/test_endpoint_vllm.py``)."""
    stub.reset()
    conv = _write(tmp_path, "conv.json", json.dumps(CONVERSATIONS))
    out = tmp_path / "r.json"
    p = cli(stub.url("ttft=0.3;gap=0.05;usage=chunk"), "--model", "m", "--chat", "--prompts",
            conv, "--multi-turn", "--output-len", "4", "--concurrency", "2", "--warmup", "0",
            "--server-metrics", "-o", str(out))  # fmt: skip
    assert p.returncode == 0, p.stdout + p.stderr
    entry = json.loads(out.read_text())["configurations"][0]
    assert entry["server_metrics"]["summary"]["prefix_cache_hit_rate"] == pytest.approx(0.25)
    assert entry["aggregates"]["sessions"]["prefix_cache_hit_rate"] == pytest.approx(0.25)
    assert "prefix-cache hit rate 25.0% (server metrics)" in p.stdout
