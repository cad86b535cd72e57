"""Server-side pieces of the request consumer: Lua for priority reads and lease renewal, reply parsing."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

# Claim at most ARGV[3] entries (the consumer's free slots), most urgent lane first. XREADGROUP's
# COUNT applies per stream, so every stream is read on its own with the room still left: reading
# a whole lane at once could claim COUNT entries from each of its streams and hoard work that an
# idle replica could run. KEYS are the request streams lane by lane (ARGV[4] per lane); ARGV[5]
# rotates the first stream read within a lane so that an agent's own stream and its capability
# streams take turns. Returns {entries, tails}: tails (the last entry id of every stream, '0-0'
# if empty) only when room is left, i.e. when every stream was drained; a waiter blocks on them.
PRIORITY_READ_LUA = """
local room = tonumber(ARGV[3])
local per = tonumber(ARGV[4])
local rotation = tonumber(ARGV[5])
local found = {}
for first = 1, #KEYS, per do
  for k = 0, per - 1 do
    if room <= 0 then return {found, false} end
    local key = KEYS[first + (k + rotation) % per]
    local got = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', room, 'STREAMS', key, '>')
    if got then
      found[#found + 1] = got[1]
      room = room - #got[1][2]
    end
  end
end
if room <= 0 then return {found, false} end
local tails = {}
for i = 1, #KEYS do
  local last = redis.call('XREVRANGE', KEYS[i], '+', '-', 'COUNT', 1)
  tails[i] = last[1] and last[1][1] or '0-0'
end
return {found, tails}
"""

# Renew the lease on entries this consumer still owns (XCLAIM with min-idle 0 resets their idle
# time without counting a delivery); return the ids another consumer has taken over meanwhile.
LEASE_LUA = """
local lost = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return lost
"""


def _fields(flat: list[Any] | None) -> dict[str, str] | None:
    if flat is None:
        return None
    return {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}


def parse_read(raw: Any) -> list[tuple[str, str, dict[str, str] | None]]:
    """Flatten a raw XREADGROUP reply (from Lua) into (stream, entry id, fields)."""
    if not raw:
        return []
    return [(stream, entry[0], _fields(entry[1])) for stream, entries in raw for entry in entries]


def batches_of(batches: Any) -> list[tuple[str, str, dict[str, str] | None]]:
    """Flatten a redis-py XREADGROUP reply into (stream, entry id, fields)."""
    return [(stream, entry_id, fields) for stream, items in batches or [] for entry_id, fields in items]


def parse_priority_read(raw: Any) -> tuple[list[tuple[str, str, dict[str, str] | None]], list[str] | None]:
    """The reply of PRIORITY_READ_LUA: the claimed entries, and the stream tails if all were drained."""
    found, tails = raw
    return parse_read(found), (list(tails) if tails else None)


async def delivery_counts(client: aioredis.Redis, stream: str, group: str, ids: list[str]) -> dict[str, int]:
    """How often each pending entry has been delivered (XAUTOCLAIM does not say)."""
    pipe = client.pipeline(transaction=False)
    for entry_id in ids:
        pipe.xpending_range(stream, group, min=entry_id, max=entry_id, count=1)
    counts: dict[str, int] = {}
    for rows in await pipe.execute():
        for row in rows:
            counts[row["message_id"]] = int(row["times_delivered"])
    return counts
