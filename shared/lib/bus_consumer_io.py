"""Server-side pieces of the request consumer: Lua for priority reads and lease renewal, reply parsing."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

# Read from the most urgent non-empty lane only, in one round trip. KEYS are the request streams
# lane by lane (ARGV[4] streams per lane); a lane is read only when every more urgent one is empty.
PRIORITY_READ_LUA = """
local per = tonumber(ARGV[4])
for first = 1, #KEYS, per do
  local args = {'XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[3], 'STREAMS'}
  for j = first, first + per - 1 do args[#args + 1] = KEYS[j] end
  for j = 1, per do args[#args + 1] = '>' end
  local found = redis.call(unpack(args))
  if found then return found end
end
return false
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
