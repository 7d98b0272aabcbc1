"""serve/store: API keys, request limits, flood bans and the translation cache, on a real
redis-server (tests/redis_fixture.py) and on this host's SQLite file and shared memory."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import sqlite3
import time
from pathlib import Path

import pytest
from redis_fixture import RedisServer, redis_server, require_redis  # noqa: F401

from serve.store.cache import TranslationCache
from serve.store.connection import StoreUnavailable, redis_client
from serve.store.keys import KeyLimits, KeyStore, RedisKeyStore, SqliteKeyStore, open_key_store
from serve.store.limiter import Counters, FloodGuard, RequestLimiter, Verdict


@pytest.fixture(params=["sqlite", "redis"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[KeyStore, KeyStore, str]:
    """Two independent store objects on one storage (as two replicas, or two HTTP processes), and
    where the raw data is."""
    if request.param == "sqlite":
        path = tmp_path / "db" / "keys.db"
        return SqliteKeyStore(path), open_key_store(None, str(path)), str(path)
    server: RedisServer = request.getfixturevalue("redis_server")
    return RedisKeyStore.from_url(server.url), open_key_store(server.url), server.url


def raw_dump(where: str) -> bytes:
    if where.startswith("redis://"):
        client = redis_client(where)
        return repr(client.hgetall("seq2seq:api-keys")).encode()
    return Path(where).read_bytes() + Path(where + "-wal").read_bytes()


def test_keys_are_stored_as_digests_and_listed_without_the_key(stores) -> None:
    a, _, where = stores
    key = a.add(60, 500)
    own = a.add(5, key="my-own-key")
    assert own == "my-own-key" and len(key) == 36 and key.count("-") == 4  # a uuid4, as LibreTranslate
    assert a.lookup(key) == KeyLimits(60, 500) and a.lookup(own) == KeyLimits(5, None)
    assert a.lookup("not-a-key") is None and a.lookup(key.upper()) is None
    dump = raw_dump(where)
    assert key.encode() not in dump and b"my-own-key" not in dump
    assert hashlib.sha256(key.encode()).hexdigest().encode() in dump
    listed = {e.key_id: e for e in a.entries()}
    assert set(listed) == {hashlib.sha256(k.encode()).hexdigest()[:12] for k in (key, own)}
    assert all(key not in repr(e) and "my-own-key" not in repr(e) for e in listed.values())
    assert a.add(7, 0, key=own) == own and a.lookup(own) == KeyLimits(7, None)  # new limits, one entry
    assert len(a.entries()) == 2
    for bad in ((0, None, None), (5, -1, None), (5, None, " padded")):
        with pytest.raises(ValueError):
            a.add(*bad)


def test_an_added_or_removed_key_counts_at_once_on_another_instance(stores) -> None:
    a, b, _ = stores
    assert b.lookup("k-1") is None
    began = time.monotonic()
    a.add(10, key="k-1")
    assert b.lookup("k-1") == KeyLimits(10, None)  # no cache: well within the 5 s promised
    a.add(10, key="k-2")
    assert b.remove("k-1") and a.lookup("k-1") is None
    (entry,) = a.entries()
    assert b.remove(entry.key_id) and a.lookup("k-2") is None  # by the id that `list` shows
    assert not b.remove("k-2") and not b.remove(entry.key_id)
    assert time.monotonic() - began < 5


def test_redis_down_fails_key_checks_closed_and_they_recover_by_themselves(redis_server) -> None:
    store = RedisKeyStore.from_url(redis_server.url)
    key = store.add(10)
    redis_server.kill()
    began = time.monotonic()
    for _ in range(3):  # the first reaches for Redis, the next ones fail at once (the breaker)
        with pytest.raises(StoreUnavailable, match="API key store .* unreachable"):
            store.lookup(key)
    assert time.monotonic() - began < 1.0
    assert not store.breaker.healthy and "Connection refused" in store.breaker.last_error
    redis_server.start()  # the same port, its append-only file: the key is still there
    deadline = time.monotonic() + 5
    while True:
        try:
            assert store.lookup(key) == KeyLimits(10, None)
            break
        except StoreUnavailable:
            assert time.monotonic() < deadline, "the key store did not reconnect within 5 s"
            time.sleep(0.05)


def test_objects_made_before_redis_is_up_work_once_it_is(tmp_path: Path) -> None:
    """A replica starts while Redis is still coming up: nothing connects before the first use."""
    require_redis()
    later = RedisServer(tmp_path)  # its port chosen, nothing listening yet
    client = redis_client(later.url)
    store, limiter = RedisKeyStore(client), RequestLimiter(Counters(client), req_limit=1)
    with pytest.raises(StoreUnavailable):
        store.lookup("k")
    assert limiter.hit("10.0.0.1") == Verdict(True, checked=False)
    later.start()
    try:
        deadline = time.monotonic() + 5
        while True:
            try:
                assert store.lookup("k") is None
                break
            except StoreUnavailable:
                assert time.monotonic() < deadline, "no reconnection within 5 s"
                time.sleep(0.05)
        assert limiter.hit("10.0.0.1").checked and not limiter.hit("10.0.0.1").allowed
    finally:
        later.kill()


def test_sqlite_unreadable_fails_closed_and_a_libretranslate_file_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "garbage.db"
    bad.write_bytes(b"not a database" * 200)
    with pytest.raises(StoreUnavailable, match="garbage.db"):
        SqliteKeyStore(bad).lookup("k")
    lt = tmp_path / "api_keys.db"
    with sqlite3.connect(lt) as c:
        c.execute("CREATE TABLE api_keys (api_key TEXT PRIMARY KEY, req_limit INTEGER NOT NULL)")
    with pytest.raises(ValueError, match="import-libretranslate"):
        SqliteKeyStore(lt).lookup("k")


# -- limits -----------------------------------------------------------------------------------
def redis_limiter(server: RedisServer, **limits: int) -> RequestLimiter:
    return RequestLimiter(Counters(redis_client(server.url)), **limits)


def test_two_limiters_on_one_redis_share_the_limit(redis_server) -> None:
    a, b = redis_limiter(redis_server, req_limit=5), redis_limiter(redis_server, req_limit=5)
    verdicts = [(a if i % 2 else b).hit("10.0.0.1") for i in range(6)]
    assert [v.allowed for v in verdicts] == [True] * 5 + [False]
    assert verdicts[-1].limit == "5 per 1 minute" and 1 <= verdicts[-1].retry_after <= 60
    assert a.hit("10.0.0.2").allowed  # another address counts alone


def _hits(limiter: RequestLimiter, n: int, out: mp.Queue) -> None:
    out.put(sum(limiter.hit("10.0.0.1").allowed for _ in range(n)))


def test_processes_forked_after_the_limiter_share_this_hosts_counters() -> None:
    limiter = RequestLimiter(Counters(None), req_limit=30)
    ctx = mp.get_context("fork")  # as LitServe starts its HTTP processes
    out = ctx.Queue()
    procs = [ctx.Process(target=_hits, args=(limiter, 20, out)) for _ in range(3)]
    for p in procs:
        p.start()
    allowed = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert sum(allowed) == 30 and max(allowed) < 30, allowed
    assert not limiter.hit("10.0.0.1").allowed and limiter.hit("10.0.0.9").allowed


@pytest.fixture(params=["memory", "redis"])
def counters(request: pytest.FixtureRequest) -> Counters:
    if request.param == "memory":
        return Counters(None, slots=1024)
    return Counters(redis_client(request.getfixturevalue("redis_server").url))


def test_costs_keys_and_windows(counters: Counters) -> None:
    limiter = RequestLimiter(counters, req_limit=5, hourly_req_limit=8)
    assert limiter.hit("10.0.0.1", cost=3).allowed and not limiter.hit("10.0.0.1", cost=3).allowed
    # a key counts apart from its address, with its own limit and the hourly window scaled x60
    assert [str(w) for w in limiter.windows(2)] == ["2 per 1 minute", "120 per 1 hour"]
    assert [limiter.hit("10.0.0.1", "key-a", 2).allowed for _ in range(3)] == [True, True, False]
    assert limiter.hit("10.0.0.1", "key-b", 2).allowed
    hourly = RequestLimiter(counters, req_limit=100, hourly_req_limit=3, daily_req_limit=50)
    verdicts = [hourly.hit("10.0.0.7") for _ in range(4)]
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert verdicts[-1].limit == "3 per 1 hour" and 3500 < verdicts[-1].retry_after <= 3600
    assert [str(w) for w in hourly.windows(1)] == ["1 per 1 minute", "60 per 1 hour", "1440 per 1 day"]
    assert RequestLimiter(counters).hit("10.0.0.1", cost=10**6).allowed  # no limit at all
    flood = FloodGuard(counters, threshold=2)
    flood.report("10.0.0.1")
    assert not flood.banned("10.0.0.1")
    flood.report("10.0.0.1")
    assert flood.banned("10.0.0.1") and not flood.banned("10.0.0.2")


def test_redis_down_lets_requests_through_counted_and_limits_come_back(redis_server) -> None:
    seen: list[str] = []
    counters = Counters(redis_client(redis_server.url), on_fail_open=seen.append)
    limiter, flood = RequestLimiter(counters, req_limit=2), FloodGuard(counters, threshold=1)
    assert limiter.hit("10.0.0.1").allowed
    redis_server.kill()
    verdicts = [limiter.hit("10.0.0.1") for _ in range(3)]
    assert all(v.allowed and not v.checked for v in verdicts)
    assert not flood.banned("10.0.0.1")
    assert limiter.fail_open_total == 4 and len(seen) == 4 and "rate-limit store" in seen[0]
    redis_server.start()
    deadline = time.monotonic() + 5
    while not (v := limiter.hit("10.0.0.1")).checked:
        assert time.monotonic() < deadline, "the limiter did not reconnect within 5 s"
        time.sleep(0.05)
    assert v.allowed and not limiter.hit("10.0.0.1").allowed  # the count from before the crash held


def test_translation_cache_is_shared_through_redis(redis_server) -> None:
    a = TranslationCache(redis_client(redis_server.url), ["key-a"])
    b = TranslationCache(redis_client(redis_server.url), ["all"])
    request = {"q": ["Hello"], "source": "en", "target": "fr", "format": "text"}
    assert a.applies("key-a") and not a.applies("key-b") and not a.applies(None) and b.applies(None)
    assert b.get(request) is None
    a.put(request, {"translatedText": ["Bonjour"]})
    assert b.get(request) == {"translatedText": ["Bonjour"]}
    assert b.get(request | {"target": "de"}) is None
    assert 0 < redis_server.client().ttl(a._key(request)) <= 7 * 24 * 3600
    redis_server.kill()
    assert b.get(request) is None and b.errors_total == 1  # a miss, not an error
    local = TranslationCache(None, ["all"], local_entries=1)
    local.put(request, {"t": 1})
    assert local.get(request) == {"t": 1}
    local.put(request | {"q": ["x"]}, {"t": 2})
    assert local.get(request) is None  # the oldest went out


def test_redis_commands_per_request(redis_server) -> None:
    """What one allowed request with a key costs: the key lookup, a flood check and 3 windows."""
    client = redis_client(redis_server.url)
    keys, counters = RedisKeyStore(client), Counters(client)
    limiter, flood = RequestLimiter(counters, 100, 1000, 10000), FloodGuard(counters, 5)
    key = keys.add(50)
    limiter.hit("10.0.0.1", key, 50), flood.banned("10.0.0.1")  # scripts loaded, connections made
    before = redis_server.commands()
    n = 20
    for _ in range(n):
        limits = keys.lookup(key)
        assert not flood.banned("10.0.0.1")
        assert limiter.hit("10.0.0.1", key, limits.req_limit).allowed
    after = redis_server.commands()
    probe = {"info", "hello"}  # the commands() call itself
    per_request = {
        c: (v - before.get(c, 0)) / n for c, v in after.items() if v != before.get(c, 0) and c not in probe
    }
    # round trips: HGET + GET + 3 EVALSHA; inside the scripts: INCRBY per window (EXPIRE: new windows only)
    assert per_request == {"hget": 1, "get": 1, "evalsha": 3, "incrby": 3}, per_request
