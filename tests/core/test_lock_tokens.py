"""Stampede lock tokens (issue 12, the miss path): unique among every holder of a lock,
in this process and in others, without a system call per miss."""

from __future__ import annotations

import os
import re
import threading

import pytest

from cachekit._engine import miss


def test_a_token_is_32_hex_digits_and_the_lock_key_is_the_keys():
    lock_key, token = miss._lock_for("cachekit:ns:f:abc")
    assert lock_key == miss.lock_key_for("cachekit:ns:f:abc")
    assert re.fullmatch("[0-9a-f]{32}", token)


def test_no_two_tokens_of_a_process_are_equal_even_across_threads():
    tokens: list[str] = []

    def take() -> None:
        tokens.extend(miss._lock_for("k")[1] for _ in range(2000))

    threads = [threading.Thread(target=take) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(tokens)) == len(tokens) == 16_000


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_draws_tokens_of_its_own():
    parent = miss._lock_for("k")[1]
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its first token after the fork
        try:
            os.write(write, miss._lock_for("k")[1].encode())
        finally:
            os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert re.fullmatch("[0-9a-f]{32}", child)
    assert child[:16] != parent[:16]  # another random prefix, not the parent's
    assert child != miss._lock_for("k")[1]
