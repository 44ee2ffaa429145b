"""The statements of the ``sqlite://`` broker, over the tables of :mod:`._sqlite_schema`.

Each names its parameters' meaning where it is not obvious; the comments say why a
statement has its shape (most are set-based, so a batch costs one step of SQLite).
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ACK",
    "BY_POSITION",
    "COLUMNS",
    "COUNT_ACKS",
    "COUNT_GROUP",
    "DELETE_ACKED",
    "DEPTH",
    "FRESH",
    "GROUP",
    "GROUP_CURSOR",
    "INSERT",
    "INSERT_DELAYED",
    "INSERT_NEW",
    "INSERT_ONE",
    "LEASED",
    "LEASE_FRESH",
    "MARK",
    "NACK",
    "NEW_GROUP",
    "NEXT_DUE",
    "NEXT_NUMBER",
    "OLDEST",
    "PROBE",
    "PROMOTE",
    "RAISE_FLOOR",
    "REDELIVER",
]

MARK: Final = "UPDATE meta SET clock = ? WHERE id = 0 AND clock < ?"
# The next free number of a topic: past the floor and past its last kept message.
NEXT_NUMBER: Final = """
    SELECT max(number_floor, coalesce((SELECT max(position) FROM messages
                                       WHERE position >= :base AND position < :end)
                                      - :base + 1, 0))
    FROM topics WHERE id = :topic
"""
RAISE_FLOOR: Final = """
    UPDATE topics SET number_floor = :floor WHERE id = :topic AND number_floor < :floor
      AND NOT EXISTS (SELECT 1 FROM messages WHERE position >= :base + :floor AND position < :end)
"""
INSERT: Final = (
    "INSERT INTO messages (position, payload, headers, key, published_at, number)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)
# New messages are bound without None and without bytes: Python's sqlite3 binds int, float,
# str and bytearray directly but runs its adapter lookup (about a microsecond) on any other
# value. So payload and headers come as bytearray, no headers as an empty one and no key as
# '' (neither is a possible value), and the statements turn those into NULL.
INSERT_NEW: Final = (
    "INSERT INTO messages (position, payload, headers, key, published_at)"
    " VALUES (?, ?, nullif(?, x''), nullif(?, ''), ?)"
)
# One message, numbered and stored in one statement (a transaction of its own in autocommit
# mode: its write lock is taken before it reads). ?1 is the topic's base position, ?2 the
# end of its range, ?7 its id, ?8 the number limit: no row is written past it.
INSERT_ONE: Final = """
    INSERT INTO messages (position, payload, headers, key, published_at)
    SELECT ?1 + next, ?3, nullif(?4, x''), nullif(?5, ''), ?6 FROM (
        SELECT max(number_floor, coalesce((SELECT max(position) FROM messages
                                           WHERE position >= ?1 AND position < ?2)
                                          - ?1 + 1, 0)) AS next
        FROM topics WHERE id = ?7)
    WHERE next < ?8
"""
INSERT_DELAYED: Final = (
    "INSERT INTO delayed (topic, number, due, payload, headers, key, published_at)"
    " VALUES (?, ?, ?, ?, nullif(?, x''), nullif(?, ''), ?)"
)
PROMOTE: Final = (
    "DELETE FROM delayed WHERE topic = ? AND due <= ?"
    " RETURNING due, number, payload, headers, key, published_at"
)
# What a consumer could claim now, and else when something falls due (read, no lock).
PROBE: Final = """
    SELECT EXISTS (SELECT 1 FROM pending WHERE grp = :grp AND due <= :now)
        OR EXISTS (SELECT 1 FROM messages WHERE position >= :cursor AND position < :end)
        OR EXISTS (SELECT 1 FROM delayed WHERE topic = :topic AND due <= :now),
        (SELECT min(due) FROM pending WHERE grp = :grp),
        (SELECT min(due) FROM delayed WHERE topic = :topic)
"""
NEXT_DUE: Final = """
    SELECT (SELECT min(due) FROM pending WHERE grp = :grp),
           (SELECT min(due) FROM delayed WHERE topic = :topic)
"""
REDELIVER: Final = """
    UPDATE pending SET due = :deadline, token = :token, attempt = attempt + 1
    WHERE grp = :grp AND (due, position) IN (
        SELECT due, position FROM pending WHERE grp = :grp AND due <= :now
        ORDER BY due, position LIMIT :limit)
    RETURNING position, attempt, error
"""
COLUMNS: Final = "position, number, payload, headers, key, published_at"
FRESH: Final = (
    f"SELECT {COLUMNS}, 1, NULL FROM messages WHERE position >= ? AND position < ?"
    " ORDER BY position LIMIT ?"
)
LEASE_FRESH: Final = (
    "INSERT INTO pending (grp, due, position, token, attempt)"
    " SELECT ?, ?, position, ?, 1 FROM messages WHERE position >= ? AND position <= ?"
)
BY_POSITION: Final = (
    f"SELECT {COLUMNS} FROM messages WHERE position IN (SELECT value FROM json_each(?))"
)
# Acks delete their leases with ACK and compare the count; only when some were stale (the
# count falls short) is that undone and LEASED asked which leases exist, as one JSON row
# (RETURNING would cost a step, and a round trip of the GIL, per row).
LEASED: Final = (
    "SELECT json_group_array(position) FROM pending WHERE grp = ? AND due = ? AND token = ?"
    " AND position IN (SELECT value FROM json_each(?))"
)
ACK: Final = (
    "DELETE FROM pending WHERE grp = ? AND due = ? AND token = ?"
    " AND position IN (SELECT value FROM json_each(?))"
)
NACK: Final = (
    "UPDATE pending SET due = ?, token = NULL, error = ?"
    " WHERE grp = ? AND due = ? AND position = ? AND token = ?"
)

# Groups.
GROUP: Final = "SELECT id FROM consumer_groups WHERE topic = ? AND name = ?"
GROUP_CURSOR: Final = "SELECT id, cursor FROM consumer_groups WHERE topic = ? AND name = ?"
OLDEST: Final = "SELECT min(position) FROM messages WHERE position >= ? AND position < ?"
NEW_GROUP: Final = "INSERT INTO consumer_groups (topic, name, cursor) VALUES (?, ?, ?) RETURNING id"
COUNT_GROUP: Final = "UPDATE topics SET group_count = group_count + 1 WHERE id = ?"

# Acked messages: counted per group, deleted once every group has acked (the parameter
# is the group count; 0 deletes them outright, for a topic with one group).
COUNT_ACKS: Final = (
    "UPDATE messages SET acks = acks + 1 WHERE position IN (SELECT value FROM json_each(?))"
)
DELETE_ACKED: Final = (
    "DELETE FROM messages WHERE position IN (SELECT value FROM json_each(?)) AND acks >= ?"
)

# One snapshot of a group's depth: new messages past its cursor, its leases (due, in
# flight, handed back and resting) and the topic's delayed messages (due or not).
DEPTH: Final = """
    SELECT (SELECT count(*) FROM messages WHERE position >= :cursor AND position < :end),
           total(due <= :now), total(due > :now AND token IS NOT NULL),
           total(due > :now AND token IS NULL),
           (SELECT total(due <= :now) FROM delayed WHERE topic = :topic),
           (SELECT total(due > :now) FROM delayed WHERE topic = :topic)
    FROM pending WHERE grp = :grp
"""
