"""The send-permission decision: may ``from_uid`` send to ``(channel_id, channel_type)``?

This is the hot path. It is one function over the state's dicts and sets, first match wins, and it
returns WuKongIM's reason code as a plain int (``REASON_NAMES`` maps it to a name). Order of the
rules, as a table::

    rule                                                   person (type 1)   group-like / temp
    sender's own person record has send_ban, not system    25 SendBan         25 SendBan
    channel missing / temp expired                          -                 5  ChannelNotExist
    disband=1 (applies to system accounts too)              -                 24 Disband
    sender is a system account                              1  Success        1  Success
    sender == receiver                                      1  Success        -
    ban=1                                                   -                 19 Ban
    blacklist contains sender (beats the whitelist)         4  InBlacklist    4  InBlacklist
    sender not a subscriber                                 -                 3  SubscriberNotExist
    send_ban=1 (mute-all) and sender not whitelisted        -                 25 SendBan
    whitelist non-empty, sender not in it                   13 NotInWhitelist 13 NotInWhitelist
                                       (unless allow_stranger=1 on the receiver)
    otherwise                                               1  Success        1  Success
"""

from __future__ import annotations

from typing import Final

from server.state import NO_TABLE, PERSON, SHARD_MASK, State

SUCCESS: Final = 1
SUBSCRIBER_NOT_EXIST: Final = 3
IN_BLACKLIST: Final = 4
CHANNEL_NOT_EXIST: Final = 5
NOT_IN_WHITELIST: Final = 13
BAN: Final = 19
DISBAND: Final = 24
SEND_BAN: Final = 25

REASON_NAMES: Final[dict[int, str]] = {
    SUCCESS: "Success",
    SUBSCRIBER_NOT_EXIST: "SubscriberNotExist",
    IN_BLACKLIST: "InBlacklist",
    CHANNEL_NOT_EXIST: "ChannelNotExist",
    NOT_IN_WHITELIST: "NotInWhitelist",
    BAN: "Ban",
    DISBAND: "Disband",
    SEND_BAN: "SendBan",
}


def decide(state: State, from_uid: str, channel_id: str, channel_type: int, now_ms: int) -> int:
    """The reason code for one send attempt; ``SUCCESS`` (1) means allowed.

    ``now_ms`` only matters for temporary channels (an expired one counts as missing). Each
    channel lookup is ``table[hash(id) & SHARD_MASK].get(id)``: one dict probe (``State`` keeps a
    channel type's table in shards).
    """
    is_system = from_uid in state.system_uids
    if from_uid in state.send_banned and not is_system:  # own person channel has send_ban=1
        return SEND_BAN

    if channel_type == PERSON:
        if is_system or from_uid == channel_id:
            return SUCCESS
        receiver = state.persons[hash(channel_id) & SHARD_MASK].get(channel_id)
        if receiver is None:
            return SUCCESS
        if from_uid in receiver.blacklist:
            return IN_BLACKLIST
        whitelist = receiver.whitelist
        if whitelist and from_uid not in whitelist and receiver.allow_stranger != 1:
            return NOT_IN_WHITELIST
        return SUCCESS

    ch = state.tables.get(channel_type, NO_TABLE)[hash(channel_id) & SHARD_MASK].get(channel_id)
    if ch is None or (ch.expires_at and ch.expires_at <= now_ms):
        return CHANNEL_NOT_EXIST
    if ch.disband:
        return DISBAND
    if is_system:
        return SUCCESS
    if ch.ban:
        return BAN
    if from_uid in ch.blacklist:
        return IN_BLACKLIST
    if from_uid not in ch.subscribers:
        return SUBSCRIBER_NOT_EXIST
    whitelist = ch.whitelist
    if ch.send_ban and from_uid not in whitelist:
        return SEND_BAN
    if whitelist and from_uid not in whitelist:
        return NOT_IN_WHITELIST
    return SUCCESS
