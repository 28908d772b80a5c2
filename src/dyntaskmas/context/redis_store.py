"""The Redis context store, for runs whose agents live in several processes.

Needs the optional ``redis`` extra (redis-py's asyncio client). Connections
come from a :class:`redis.asyncio.BlockingConnectionPool`, which waits for a
free connection instead of failing with "Too many connections" when many
agents call at once.

Keys, all under ``prefix`` (``{id}`` is the JSON text ``["scope", "key"]``):

- ``{prefix}:e:{id}``: a hash with the committed entry's version ``v`` and its JSON ``entry``;
- ``{prefix}:lock:{id}``: the id of the transaction that has locked the key;
- ``{prefix}:tx:{txid}``: a hash with the transaction's ``state`` (prepared
  or committed) and its ``writes``, before-images included;
- ``{prefix}:index``: a set of every ``{id}`` with a committed entry;
- ``{prefix}:seq``: the last sequence number of the change feed;
- ``{prefix}:changes``: a sorted set of every ``{id}`` ever committed, scored
  by the sequence number of its last change (commit or undone commit).

Each protocol call is one Lua script, and Redis runs a script without
interleaving any other command, which makes prepare, commit, abort and
release atomic. A script checks everything before its first write, because
Redis does not roll back the writes of a script that fails halfway.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis

from dyntaskmas.context.entries import Entry, StagedWrite
from dyntaskmas.context.scopes import is_within
from dyntaskmas.context.stores import ChangeSet, check_distinct
from dyntaskmas.errors import VersionConflictError

DEFAULT_PREFIX = "dyntaskmas:context"
DEFAULT_MAX_CONNECTIONS = 16
#: Seconds a call waits for a free pooled connection before raising.
DEFAULT_POOL_TIMEOUT_S = 20.0

# ARGV: prefix, txid, JSON list of [id, expected_version, entry_json, new_version].
# Returns {"ok"}, {"exists"} or {"conflict", index, actual_version, holder}.
_PREPARE = """
local prefix, txid = ARGV[1], ARGV[2]
local writes = cjson.decode(ARGV[3])
local txkey = prefix .. ':tx:' .. txid
if redis.call('EXISTS', txkey) == 1 then return {'exists'} end
local staged = {}
for i, w in ipairs(writes) do
  local id = w[1]
  local holder = redis.call('GET', prefix .. ':lock:' .. id)
  local current = redis.call('HMGET', prefix .. ':e:' .. id, 'v', 'entry')
  local actual = tonumber(current[1]) or 0
  if holder or actual ~= tonumber(w[2]) then
    return {'conflict', tostring(i - 1), tostring(actual), holder or ''}
  end
  staged[i] = {id, w[3], w[4], current[2] or false, actual}
end
for _, s in ipairs(staged) do
  redis.call('SET', prefix .. ':lock:' .. s[1], txid)
end
redis.call('HSET', txkey, 'state', 'prepared', 'writes', cjson.encode(staged))
return {'ok'}
"""

# ARGV: prefix, txid. Returns "ok" or "missing".
_COMMIT = """
local prefix, txid = ARGV[1], ARGV[2]
local txkey = prefix .. ':tx:' .. txid
local state = redis.call('HGET', txkey, 'state')
if not state then return 'missing' end
if state == 'committed' then return 'ok' end
local staged = cjson.decode(redis.call('HGET', txkey, 'writes'))
for _, s in ipairs(staged) do
  redis.call('HSET', prefix .. ':e:' .. s[1], 'v', s[3], 'entry', s[2])
  redis.call('SADD', prefix .. ':index', s[1])
  redis.call('ZADD', prefix .. ':changes', redis.call('INCR', prefix .. ':seq'), s[1])
end
redis.call('HSET', txkey, 'state', 'committed')
return 'ok'
"""

# ARGV: prefix, txid, and "1" to restore before-images (abort) or "0" (release).
_FINISH = """
local prefix, txid, restore = ARGV[1], ARGV[2], ARGV[3] == '1'
local txkey = prefix .. ':tx:' .. txid
local state = redis.call('HGET', txkey, 'state')
if not state then return 'ok' end
local staged = cjson.decode(redis.call('HGET', txkey, 'writes'))
for _, s in ipairs(staged) do
  if restore and state == 'committed' then
    if s[4] == false then
      redis.call('DEL', prefix .. ':e:' .. s[1])
      redis.call('SREM', prefix .. ':index', s[1])
    else
      redis.call('HSET', prefix .. ':e:' .. s[1], 'v', s[5], 'entry', s[4])
    end
    redis.call('ZADD', prefix .. ':changes', redis.call('INCR', prefix .. ':seq'), s[1])
  end
  local lock = prefix .. ':lock:' .. s[1]
  if redis.call('GET', lock) == txid then redis.call('DEL', lock) end
end
redis.call('DEL', txkey)
return 'ok'
"""


class RedisStore:
    """A store in one Redis database, shared by every process that uses the same prefix.

    ``url`` is a redis-py URL such as ``redis://127.0.0.1:6379/0``. Keys are
    namespaced by ``prefix``, so several runs or tests can share a server.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        name: str = "redis",
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        pool_timeout_s: float = DEFAULT_POOL_TIMEOUT_S,
    ) -> None:
        if not prefix:
            raise ValueError("the Redis key prefix must not be empty")
        self.prefix = prefix
        self._name = name
        pool: BlockingConnectionPool = BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=pool_timeout_s, decode_responses=True
        )
        self._redis: Redis = Redis(connection_pool=pool)
        self._prepare = self._redis.register_script(_PREPARE)
        self._commit = self._redis.register_script(_COMMIT)
        self._finish = self._redis.register_script(_FINISH)

    @property
    def name(self) -> str:
        return self._name

    async def get(self, scope: str, key: str) -> Entry | None:
        text = await self._redis.hget(self._entry_key(_entry_id(scope, key)), "entry")
        return _decode_entry(text) if text is not None else None

    async def list_entries(self, scope: str) -> list[Entry]:
        # NOTE: reads the whole index and filters here, O(entries in the store).
        # Enough for one run's context; a per-root index would bound it by run.
        # decode_responses=True makes every member a str.
        ids: set[Any] = await self._redis.smembers(f"{self.prefix}:index")
        wanted = sorted(i for i in ids if is_within(json.loads(i)[0], scope))
        if not wanted:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for entry_id in wanted:
                pipe.hget(self._entry_key(entry_id), "entry")
            texts: list[Any] = await pipe.execute()
        return [_decode_entry(text) for text in texts if text is not None]

    async def changes_since(self, scope: str, cursor: int) -> ChangeSet:
        # A script assigns each sequence number and adds the key in one step,
        # so no change below the highest score read can appear later.
        scored: list[Any] = await self._redis.zrangebyscore(
            f"{self.prefix}:changes", f"({cursor}", "+inf", withscores=True
        )
        if not scored:
            return ChangeSet((), (), cursor)
        newest = max(cursor, int(scored[-1][1]))
        wanted = [entry_id for entry_id, _ in scored if is_within(json.loads(entry_id)[0], scope)]
        if not wanted:
            return ChangeSet((), (), newest)
        async with self._redis.pipeline(transaction=False) as pipe:
            for entry_id in wanted:
                pipe.hget(self._entry_key(entry_id), "entry")
            texts: list[Any] = await pipe.execute()
        # An entry changed again after the range was read comes back at its
        # newer state; the next call returns it once more, which is harmless.
        entries = tuple(_decode_entry(text) for text in texts if text is not None)
        removed = tuple(
            _address(entry_id) for entry_id, text in zip(wanted, texts, strict=True) if text is None
        )
        return ChangeSet(entries, removed, newest)

    async def prepare(self, txid: str, writes: Sequence[StagedWrite]) -> None:
        check_distinct(writes)
        payload = [
            [_entry_id(*w.address), w.expected_version, w.entry.to_json(), w.entry.version]
            for w in writes
        ]
        result = await self._prepare(args=[self.prefix, txid, json.dumps(payload)])
        status = result[0]
        if status == "exists":
            raise ValueError(f"transaction {txid!r} is already prepared in store {self._name!r}")
        if status == "conflict":
            write = writes[int(result[1])]
            raise VersionConflictError(
                self._name,
                write.entry.scope,
                write.entry.key,
                expected_version=write.expected_version,
                actual_version=int(result[2]),
                locked_by=result[3] or None,
            )

    async def commit(self, txid: str) -> None:
        status = await self._commit(args=[self.prefix, txid])
        if status == "missing":
            raise ValueError(
                f"transaction {txid!r} is not prepared in store {self._name!r}; prepare it first"
            )

    async def abort(self, txid: str) -> None:
        await self._finish(args=[self.prefix, txid, "1"])

    async def release(self, txid: str) -> None:
        await self._finish(args=[self.prefix, txid, "0"])

    async def close(self) -> None:
        await self._redis.aclose()

    def _entry_key(self, entry_id: str) -> str:
        return f"{self.prefix}:e:{entry_id}"


def _entry_id(scope: str, key: str) -> str:
    # JSON keeps the pair unambiguous whatever characters scope and key contain.
    return json.dumps([scope, key], separators=(",", ":"))


def _address(entry_id: str) -> tuple[str, str]:
    scope, key = json.loads(entry_id)
    return str(scope), str(key)


# Every context request lists the whole run, so the same committed entry
# text comes back once per request. Decoding it, embedding included, was
# most of a request's CPU time. The text contains the version, so a changed
# entry misses the cache. Sharing decoded entries is safe because entries
# are frozen, and MemoryStore already returns shared instances.
# NOTE: up to 4,096 entries stay alive; with 512-dimension embeddings
# (about 16 kB each as tuples of floats) that is about 70 MB per process.
@functools.lru_cache(maxsize=4096)
def _decode_entry(text: str) -> Entry:
    return Entry.from_json(text)
