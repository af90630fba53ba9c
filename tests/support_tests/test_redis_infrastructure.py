"""The Redis test infrastructure does what the Redis tests rely on.

Private servers (never the machine's 6379), isolation between tests, kill/restart and
SIGSTOP/SIGCONT, every TcpProxy mode, the full-backlog listener's connect timeout, a real
Cluster and a real Sentinel failover, and no leaked processes or temp dirs.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import redis
import redis.cluster
import redis.sentinel
import redis_servers
from faults import FullBacklogListener, TcpProxy, flip_bytes, wait_until
from redis_servers import RedisServer, RedisSetupError, no_retry

SUPPORT = Path(__file__).resolve().parent.parent / "support"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still "exists"; it is dead for our purposes.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _client(address: tuple[str, int], **kwargs) -> redis.Redis:
    settings = {
        "host": address[0],
        "port": address[1],
        "socket_timeout": 0.2,
        "socket_connect_timeout": 0.2,
        "retry": no_retry(),
    }
    settings.update(kwargs)
    return redis.Redis(**settings)


# --------------------------------------------------------------------------------------------
# The shared private server


def test_the_shared_server_is_private_and_answers_ping(redis_server: RedisServer):
    assert redis_server.port != redis_servers.SHARED_MACHINE_PORT
    assert redis_server.host == "127.0.0.1"
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    assert redis_server.client().ping() is True
    assert redis_server.is_alive() and _pid_alive(redis_server.pid)
    assert redis_server.dir.is_dir()
    info = redis_server.info("server")
    assert info["tcp_port"] == redis_server.port
    assert info["process_id"] == redis_server.pid


def test_the_shared_server_runs_without_persistence(redis_server: RedisServer):
    assert redis_server.config_get("save") == ""
    assert redis_server.config_get("appendonly") == "no"
    assert redis_server.config_get("dir") == str(redis_server.dir)
    assert redis_server.config_get("bind") == "127.0.0.1"


@pytest.mark.xdist_group("redis-url-isolation")
@pytest.mark.parametrize("round_", [1, 2])
def test_redis_url_gives_an_empty_database_every_time(redis_url: str, round_: int):
    db0 = redis.Redis.from_url(redis_url, socket_timeout=1)
    db3 = redis.Redis.from_url(redis_url.removesuffix("/0") + "/3", socket_timeout=1)
    assert db0.dbsize() == 0 and db3.dbsize() == 0
    db0.set(f"left-behind-{round_}", b"x")  # the other round must not see these
    db3.set(f"left-behind-{round_}", b"x")


def test_reset_flushes_and_restores_config_changed_through_config_set(redis_server: RedisServer):
    redis_server.client().set("k", b"v")
    original = redis_server.config_get("maxmemory-policy")
    redis_server.config_set("maxmemory-policy", "allkeys-lru")
    assert redis_server.config_get("maxmemory-policy") == "allkeys-lru"
    redis_server.reset()
    assert redis_server.client().dbsize() == 0
    assert redis_server.config_get("maxmemory-policy") == original


def test_the_unix_socket_serves_the_same_server(redis_server: RedisServer):
    client = redis.Redis.from_url(redis_server.unix_url, socket_timeout=1)
    assert client.ping() is True
    assert client.info("server")["process_id"] == redis_server.pid


# --------------------------------------------------------------------------------------------
# Disposable servers: kill, stop, pause, options


def test_kill_then_restart_comes_back_on_the_same_port_without_data(make_redis_server):
    server = make_redis_server()
    port, first_pid = server.port, server.pid
    server.client().set("k", b"v")

    server.kill()
    assert not server.is_alive() and not _pid_alive(first_pid)
    with pytest.raises(redis.exceptions.ConnectionError):
        _client(server.address).ping()

    server.restart()
    assert server.port == port and server.pid != first_pid
    assert server.client().get("k") is None  # --save "": a restart loses everything


def test_a_restarted_replica_starts_empty_too(make_redis_server):
    master = make_redis_server()
    master.client().set("k", b"v")
    replica = make_redis_server("--replicaof", master.host, str(master.port))
    wait_until(lambda: replica.client().get("k") == b"v")  # a full sync wrote dump.rdb
    master.kill()
    replica.restart()
    assert replica.client().dbsize() == 0


def test_a_killed_server_port_stays_reserved_while_it_is_down(make_redis_server):
    server = make_redis_server()
    server.kill()
    with socket.socket() as other, pytest.raises(OSError):
        other.bind(("127.0.0.1", server.port))  # nobody else can take the port meanwhile
    server.restart()
    assert server.client().ping()


def test_stop_terminates_even_a_paused_server(make_redis_server):
    server = make_redis_server()
    pid = server.pid
    server.pause()
    server.stop()
    assert not server.is_alive() and not _pid_alive(pid)


def test_pause_makes_commands_time_out_and_resume_brings_them_back(make_redis_server):
    server = make_redis_server()
    client = _client(server.address, socket_timeout=0.2)
    assert client.ping()

    server.pause()
    assert server.paused
    with pytest.raises(redis.exceptions.TimeoutError):
        client.ping()
    with pytest.raises(redis.exceptions.TimeoutError):
        _client(server.address).get("k")  # a new connection: accepted by the kernel, no answer

    server.resume()
    assert client.ping() is True
    assert not server.paused


def test_options_become_config_directives(make_redis_server):
    server = make_redis_server(maxmemory="2mb", maxmemory_policy="noeviction")
    assert server.config_get("maxmemory") == str(2 * 1024 * 1024)
    client = server.client()

    def fill():
        for i in range(1000):  # 10 MB of values, far over 2 MB
            client.set(f"k{i}", b"x" * 10_000)

    with pytest.raises(redis.exceptions.OutOfMemoryError):
        fill()


def test_raw_arguments_are_passed_through(make_redis_server):
    server = make_redis_server("--maxclients", "77", "--databases", "4")
    assert server.config_get("maxclients") == "77"
    assert server.config_get("databases") == "4"


def test_config_set_and_debug_sleep_are_available(make_redis_server):
    server = make_redis_server()
    server.config_set("maxmemory", "1mb")
    assert server.config_get("maxmemory") == "1048576"
    with pytest.raises(redis.exceptions.TimeoutError):
        _client(server.address, socket_timeout=0.2).execute_command("DEBUG", "SLEEP", "0.5")


def test_client_pause_write_blocks_writes_only(make_redis_server):
    server = make_redis_server()
    client = _client(server.address, socket_timeout=0.2)
    client.set("k", b"v")
    client.execute_command("CLIENT", "PAUSE", 2000, "WRITE")
    assert client.get("k") == b"v"
    with pytest.raises(redis.exceptions.TimeoutError):
        _client(server.address).set("k", b"w")
    client.execute_command("CLIENT", "UNPAUSE")


def test_a_server_that_cannot_start_fails_with_its_log(tmp_path):
    with pytest.raises(RedisSetupError, match=r"exited with code .*\n.*--- "):
        RedisServer("--no-such-directive", "1")


def test_a_server_that_never_answers_fails_after_the_deadline(make_redis_server):
    server = make_redis_server()
    server.pause()
    with pytest.raises(RedisSetupError, match=r"did not answer PING within 0\.2s"):
        server.wait_ready(timeout=0.2)
    server.resume()


def test_missing_redis_binaries_fail_clearly_when_they_cannot_be_installed(monkeypatch, tmp_path):
    monkeypatch.setattr(redis_servers, "_binaries", None)
    monkeypatch.setattr(redis_servers, "_INSTALL_LOCK", tmp_path / "install.lock")
    monkeypatch.setattr(redis_servers, "_which", lambda name: None)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(RedisSetupError, match="not running as root"):
        redis_servers.redis_binaries()


def test_a_failed_apt_install_fails_with_apt_output(monkeypatch, tmp_path):
    def failing_apt(args, timeout):
        raise subprocess.CalledProcessError(100, ["apt-get", *args], "", "E: no network")

    monkeypatch.setattr(redis_servers, "_binaries", None)
    monkeypatch.setattr(
        redis_servers, "_which", lambda name: "/usr/bin/apt-get" if name == "apt-get" else None
    )
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(redis_servers, "_run_apt", failing_apt)
    monkeypatch.setattr(redis_servers, "_INSTALL_LOCK", tmp_path / "install.lock")
    monkeypatch.setattr(redis_servers.Path, "exists", lambda self: True)  # no policy-rc.d write
    with pytest.raises(RedisSetupError, match=r"(?s)apt-get update.*exited with 100.*no network"):
        redis_servers.redis_binaries()


# --------------------------------------------------------------------------------------------
# No leaks


def test_make_redis_server_cleans_up_even_when_the_test_fails(tmp_path: Path):
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "conftest.py").write_text(
        f"import sys\n"
        f"sys.path[:0] = [{str(SUPPORT)!r}, {str(SUPPORT.parent)!r}]\n"
        f'pytest_plugins = ["redis_fixtures"]\n'
    )
    record = tmp_path / "servers.txt"
    (tmp_path / "test_inner.py").write_text(
        textwrap.dedent(
            f"""
            def test_fails(make_redis_server, tcp_proxy):
                servers = [make_redis_server(), make_redis_server()]
                servers[1].pause()
                tcp_proxy(servers[0]).blackhole()
                with open({str(record)!r}, "w") as f:
                    for s in servers:
                        f.write(f"{{s.pid}} {{s.dir}}\\n")
                assert False, "the test fails"
            """
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env=dict(os.environ, PYTEST_DISABLE_PLUGIN_AUTOLOAD="1"),  # only our plugin
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "1 failed" in result.stdout, result.stdout + result.stderr
    entries = [line.split() for line in record.read_text().splitlines()]
    assert len(entries) == 2
    for pid, folder in entries:
        assert not _pid_alive(int(pid))
        assert not Path(folder).exists()


def _run_python(code: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(SUPPORT)),
        **kwargs,
    )


def test_servers_left_running_are_killed_at_interpreter_exit():
    proc = _run_python(
        """
        from redis_servers import RedisServer
        s = RedisServer()
        print(s.pid, s.dir, flush=True)
        """
    )
    out, _ = proc.communicate(timeout=30)
    pid, folder = out.split()
    assert proc.returncode == 0
    assert not _pid_alive(int(pid))
    assert not Path(folder).exists()


def test_servers_die_with_a_test_process_killed_with_sigkill():
    proc = _run_python(
        """
        import time
        from redis_servers import RedisServer
        s = RedisServer()
        print(s.pid, s.dir, flush=True)
        time.sleep(60)
        """
    )
    assert proc.stdout is not None
    pid, folder = proc.stdout.readline().split()
    try:
        assert _pid_alive(int(pid))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        proc.stdout.close()
    wait_until(lambda: not _pid_alive(int(pid)), timeout=5)  # PR_SET_PDEATHSIG
    assert Path(folder).exists()  # nobody was left to remove it...
    redis_servers.sweep_stale_dirs()
    assert not Path(folder).exists()  # ...until the next test process sweeps it


def test_the_sweep_kills_servers_orphaned_by_a_killed_test_process():
    proc = _run_python(
        """
        import threading, time
        from redis_servers import RedisServer
        box = []
        # Started off the main thread: no parent-death signal, so it outlives its parent.
        helper = threading.Thread(target=lambda: box.append(RedisServer()))
        helper.start()
        helper.join()
        print(box[0].pid, box[0].dir, flush=True)
        time.sleep(60)
        """
    )
    assert proc.stdout is not None
    pid, folder = proc.stdout.readline().split()
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    proc.stdout.close()
    assert _pid_alive(int(pid))
    assert redis_servers.sweep_stale_dirs() >= 1
    wait_until(lambda: not _pid_alive(int(pid)), timeout=5)
    assert not Path(folder).exists()


# --------------------------------------------------------------------------------------------
# TCP proxy


def test_the_proxy_passes_traffic_through(tcp_proxy, redis_server: RedisServer):
    proxy = tcp_proxy()
    assert proxy.mode == "pass" and proxy.port != redis_server.port
    client = _client(proxy.address)
    client.set("k", b"v" * 100_000)
    assert client.get("k") == b"v" * 100_000
    assert proxy.url == f"redis://127.0.0.1:{proxy.port}/0"
    assert redis.Redis.from_url(proxy.url).get("k") == b"v" * 100_000
    assert proxy.connections_accepted == 2 and proxy.bytes_to_client > 100_000


def test_delay_makes_a_short_timeout_expire_then_pass_recovers(tcp_proxy):
    proxy = tcp_proxy()
    client = _client(proxy.address, socket_timeout=0.2)
    client.set("k", b"v")
    proxy.set_mode("delay", 0.5)
    with pytest.raises(redis.exceptions.TimeoutError):
        client.get("k")
    with socket.create_connection(proxy.address, timeout=1.0) as sock:  # slow, but it answers
        sock.sendall(b"PING\r\n")
        assert sock.recv(16) == b"+PONG\r\n"
    proxy.set_mode("pass")
    assert client.get("k") == b"v"


def test_blackhole_times_out_on_open_and_new_connections(tcp_proxy):
    proxy = tcp_proxy()
    client = _client(proxy.address)
    assert client.ping()
    proxy.blackhole()
    with pytest.raises(redis.exceptions.TimeoutError):
        client.ping()  # an open connection
    with pytest.raises(redis.exceptions.TimeoutError):
        _client(proxy.address).ping()  # a new one: connect succeeds, the answer never comes
    proxy.pass_through()
    assert client.ping()


def test_reset_gives_connection_errors(tcp_proxy):
    proxy = tcp_proxy()
    client = _client(proxy.address)
    assert client.ping()
    proxy.reset()
    assert proxy.active_connections == 0
    with pytest.raises(redis.exceptions.ConnectionError):
        client.ping()  # the open connection was reset
    with pytest.raises(redis.exceptions.ConnectionError):
        _client(proxy.address).ping()  # new connections are reset on accept
    proxy.pass_through()
    assert client.ping()


def test_reset_sends_a_real_rst(tcp_proxy):
    proxy = tcp_proxy(mode="reset")

    def connect_and_read():
        # The proxy accepts, then resets: the RST lands on connect() or on recv().
        with socket.create_connection(proxy.address, timeout=1) as sock:
            return sock.recv(10)

    with pytest.raises(ConnectionResetError):
        connect_and_read()


def test_corrupting_the_framing_gives_a_protocol_error(tcp_proxy):
    proxy = tcp_proxy()
    client = _client(proxy.address)
    client.set("k", b"value")
    proxy.corrupt(1)
    with pytest.raises((redis.exceptions.InvalidResponse, redis.exceptions.ResponseError)):
        client.get("k")
    proxy.pass_through()
    assert _client(proxy.address).get("k") == b"value"


def test_corrupting_the_payload_gives_wrong_bytes(tcp_proxy):
    proxy = tcp_proxy()
    client = _client(proxy.address)
    client.set("k", b"value")
    proxy.corrupt(1, at="end", count=1)
    assert client.get("k") == flip_bytes(b"value", 1, at="end") != b"value"
    assert client.get("k") == b"value"  # count=1: only the next reply was corrupted


def test_corrupt_accepts_a_function(tcp_proxy):
    proxy = tcp_proxy()
    client = _client(proxy.address)
    client.set("k", b"abc")
    with proxy.mode_during("corrupt", lambda data: data.replace(b"abc", b"xyz")):
        assert client.get("k") == b"xyz"
    assert proxy.mode == "pass"
    assert client.get("k") == b"abc"


def test_refuse_closes_the_listener_and_reopens_it_on_the_same_port(tcp_proxy):
    proxy = tcp_proxy()
    client = _client(proxy.address)
    assert client.ping()
    port = proxy.port
    proxy.refuse()
    with pytest.raises(redis.exceptions.ConnectionError):
        client.ping()  # the open connection was closed
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(proxy.address, timeout=0.2)
    with pytest.raises(redis.exceptions.ConnectionError):
        _client(proxy.address).ping()
    proxy.pass_through()
    assert proxy.port == port
    assert client.ping()


def test_a_proxy_in_front_of_a_dead_server_resets_connections(make_redis_server, tcp_proxy):
    server = make_redis_server()
    proxy = tcp_proxy(server)
    assert _client(proxy.address).ping()
    server.kill()
    with pytest.raises(redis.exceptions.ConnectionError):
        _client(proxy.address).ping()
    server.restart()
    assert _client(proxy.address).ping()


def test_proxy_targets_and_bad_modes(tcp_proxy, redis_server: RedisServer):
    for target in (
        redis_server,
        redis_server.address,
        redis_server.port,
        f"127.0.0.1:{redis_server.port}",
    ):
        assert _client(tcp_proxy(target).address).ping()
    assert tcp_proxy(redis_server, mode=("delay", 0.3)).mode == "delay"
    assert tcp_proxy(redis_server, mode="blackhole").mode == "blackhole"
    proxy = tcp_proxy(redis_server)
    with pytest.raises(TypeError, match="seconds"):
        proxy.set_mode("delay")
    with pytest.raises(ValueError, match="unknown proxy mode"):
        proxy.set_mode("slow")
    with pytest.raises(ValueError, match="'start' or 'end'"):
        proxy.corrupt(1, at="middle")


def test_a_closed_proxy_frees_its_thread_and_refuses(redis_server: RedisServer):
    proxy = TcpProxy(redis_server.address)
    client = _client(proxy.address)
    assert client.ping()
    proxy.close()
    proxy.close()  # idempotent
    assert not proxy._thread.is_alive()
    with pytest.raises(redis.exceptions.ConnectionError):
        client.ping()
    with pytest.raises(RuntimeError, match="closed"):
        proxy.set_mode("pass")


# --------------------------------------------------------------------------------------------
# Connect timeouts


def test_the_full_backlog_listener_makes_redis_connects_time_out(full_backlog_listener):
    client = _client(full_backlog_listener.address, socket_connect_timeout=0.2)
    with pytest.raises(redis.exceptions.TimeoutError, match="Timeout connecting"):
        client.ping()
    with pytest.raises(redis.exceptions.TimeoutError):
        redis.Redis.from_url(full_backlog_listener.url, socket_connect_timeout=0.2).ping()


def test_the_full_backlog_listener_makes_socket_connects_time_out(full_backlog_listener):
    for _ in range(3):  # stays full: every attempt times out, none is refused
        with pytest.raises(socket.timeout):
            socket.create_connection(full_backlog_listener.address, timeout=0.2)
    assert full_backlog_listener.probe(0.1) == "timeout"


def test_a_full_backlog_listener_verifies_itself():
    listener = FullBacklogListener()
    try:
        assert listener.filled_with >= 1
        assert listener.probe() == "timeout"
    finally:
        listener.close()
    with pytest.raises(ConnectionRefusedError):  # closed: the port is free again
        socket.create_connection(listener.address, timeout=0.5)


# --------------------------------------------------------------------------------------------
# Cluster


@pytest.mark.xdist_group("cluster")
def test_the_cluster_serves_keys_across_all_slots(clean_redis_cluster):
    cluster = clean_redis_cluster
    assert len(cluster.nodes) == 3
    assert cluster.url == f"redis+cluster://127.0.0.1:{cluster.nodes[0].port}"
    for index in range(3):
        info = cluster.cluster_info(index)
        assert info["cluster_state"] == "ok"
        assert info["cluster_known_nodes"] == "3"
        assert info["cluster_slots_assigned"] == "16384"
    client = redis.cluster.RedisCluster(startup_nodes=cluster.startup_nodes, socket_timeout=1)
    keys = [f"key:{i}" for i in range(60)]
    for key in keys:
        client.set(key, key.encode())
    assert [client.get(key) for key in keys] == [key.encode() for key in keys]
    owners = {cluster.node_for_key(key) for key in keys}
    assert owners == {0, 1, 2}
    assert sum(node.client().dbsize() for node in cluster.nodes) == len(keys)
    client.close()


@pytest.mark.xdist_group("cluster")
def test_a_killed_cluster_node_fails_only_its_own_keys_and_comes_back(clean_redis_cluster):
    cluster = clean_redis_cluster
    client = cluster.client(socket_timeout=0.3, socket_connect_timeout=0.3)
    keys = [f"user:{i}" for i in range(30)]
    for key in keys:
        client.set(key, b"1")
    on_dead = [key for key in keys if cluster.node_for_key(key) == 1]
    elsewhere = [key for key in keys if cluster.node_for_key(key) != 1]
    assert on_dead and elsewhere

    cluster.kill_node(1)
    cluster.wait_node_failed(1)
    assert cluster.cluster_info(0)["cluster_state"] == "ok"  # require-full-coverage no
    survivor = cluster.client(socket_timeout=0.3, socket_connect_timeout=0.3)
    assert [survivor.get(key) for key in elsewhere] == [b"1"] * len(elsewhere)
    with pytest.raises(redis.exceptions.RedisError):
        survivor.get(on_dead[0])

    cluster.restart_node(1)
    fresh = cluster.client()
    assert fresh.get(on_dead[0]) is None  # the node restarted empty
    fresh.set(on_dead[0], b"2")
    assert fresh.get(on_dead[0]) == b"2"
    for c in (client, survivor, fresh):
        c.close()


@pytest.mark.xdist_group("cluster")
def test_clean_redis_cluster_starts_empty(clean_redis_cluster):
    assert all(node.client().dbsize() == 0 for node in clean_redis_cluster.nodes)


# --------------------------------------------------------------------------------------------
# Sentinel


@pytest.mark.xdist_group("sentinel")
def test_sentinel_reports_the_master_and_replica(clean_redis_sentinel):
    setup = clean_redis_sentinel
    assert setup.service_name == "mymaster"
    assert setup.url == f"redis+sentinel://127.0.0.1:{setup.sentinel[1]}/mymaster"
    sentinel = redis.sentinel.Sentinel([setup.sentinel], socket_timeout=1)
    assert sentinel.discover_master("mymaster") == setup.master.address
    assert sentinel.discover_slaves("mymaster") == [setup.replica.address]
    master = sentinel.master_for("mymaster", socket_timeout=1)
    master.set("k", b"v")
    assert master.execute_command("WAIT", 1, 1000) == 1
    assert sentinel.slave_for("mymaster", socket_timeout=1).get("k") == b"v"


@pytest.mark.xdist_group("sentinel")
@pytest.mark.parametrize("kill", [False, True], ids=["sentinel-failover", "kill-master"])
def test_sentinel_fails_over_to_the_replica(clean_redis_sentinel, kill: bool):
    setup = clean_redis_sentinel
    old_master, old_replica = setup.master, setup.replica
    sentinel = setup.client()
    master = sentinel.master_for("mymaster")
    master.set("k", b"v")
    assert master.execute_command("WAIT", 1, 1000) == 1

    new_master = setup.failover(kill=kill)

    assert new_master is old_replica and setup.master is old_replica
    assert setup.replica is old_master
    assert sentinel.discover_master("mymaster") == old_replica.address
    assert setup.wait_for_master(old_replica) == old_replica.address
    fresh = setup.client().master_for("mymaster")
    assert fresh.get("k") == b"v"
    fresh.set("after", b"1")
    assert fresh.execute_command("WAIT", 1, 1000) == 1  # the old master now replicates
    assert old_master.client().get("after") == b"1"


@pytest.mark.xdist_group("sentinel")
def test_reset_repairs_a_master_killed_behind_its_back(clean_redis_sentinel):
    setup = clean_redis_sentinel
    setup.master.kill()  # no failover(): Sentinel promotes the replica on its own, or not yet
    setup.reset()
    assert setup.master.is_alive() and setup.replica.is_alive()
    assert setup.master_address() == setup.master.address
    assert setup.replica.info("replication")["master_port"] == setup.master.port
    sentinel = setup.client()
    assert sentinel.discover_master("mymaster") == setup.master.address
    sentinel.master_for("mymaster").set("k", b"v")
