"""repbroker: the repbroker client for Python, over librepbroker (the C client) with ctypes; standard library only.

    import repbroker
    client = repbroker.Client(socket_path="/run/user/1000/repbroker/broker.sock", roles=("sender",),
                              ack_policy="quorum")
    client.send(eid, control, rec, lsn=(file, offset), flags=repbroker.REP_PERMANENT)   # a DB_ENV transport

    receiver = repbroker.Client(socket_path=..., roles=("sender", "receiver"))
    event = receiver.next_event(timeout=1.0)    # Message, SiteUp, SiteDown or None
    receiver.acknowledge((file, offset), site)  # DB_REP_ISPERM's LSN, for the message's source site

    writer = repbroker.attach_writer(dbenv, socket_path=..., ack_policy="quorum")   # a bsddb3 DBEnv's transport

    client.subscribe("writes")                  # application channels: forwarding writes to the master, say
    answer = client.request("writes", repbroker.EID_MASTER, b"put k v", timeout=5.0)
    message = client.next_channel_message(timeout=1.0)   # ChannelMessage or None
    client.reply(message, b"committed")

The library is found through $REPBROKER_LIBRARY, then the system's library path (librepbroker.so). Errors raise
RepbrokerError with the library's code, its name and the reason. Threads: as the C client (any thread sends,
one receives at a time); ctypes releases the GIL during every call.
"""
import ctypes
import ctypes.util
import os
from collections import namedtuple

REP_ANYWHERE, REP_NOBUFFER, REP_PERMANENT, REP_REREQUEST = 0x1, 0x2, 0x4, 0x8
EID_BROADCAST, EID_MASTER = -1, -3
_ROLES = {"sender": 0x1, "receiver": 0x2}
_ACK_POLICIES = {"none": 0, "one": 1, "quorum": 2, "all": 3}
_TRANSPORTS = {"auto": 0, "socket": 1, "shm": 2}
_ETIMEDOUT = 4

Message = namedtuple("Message", "site control rec lsn flags")
ChannelMessage = namedtuple("ChannelMessage", "channel site is_request request_id requester payload")
SiteUp = namedtuple("SiteUp", "site")
SiteDown = namedtuple("SiteDown", "site")


class RepbrokerError(Exception):
    """A librepbroker error: `code` (repbroker_error), `name` (repbroker_strerror) and `reason`."""

    def __init__(self, code, name, reason=""):
        super().__init__(f"{name}: {reason}" if reason else name)
        self.code, self.name, self.reason = code, name, reason


class _Options(ctypes.Structure):
    # repbroker_options, field for field (repbroker_client.h).
    _fields_ = [("socket_path", ctypes.c_char_p), ("group", ctypes.c_char_p), ("name", ctypes.c_char_p),
                ("roles", ctypes.c_uint), ("ack_policy", ctypes.c_int), ("ack_timeout_ms", ctypes.c_uint),
                ("send_timeout_ms", ctypes.c_uint), ("inbox_limit_bytes", ctypes.c_size_t), ("reconnect", ctypes.c_int),
                ("transport", ctypes.c_int), ("ring_bytes", ctypes.c_uint32)]


class _LSN(ctypes.Structure):
    _fields_ = [("file", ctypes.c_uint32), ("offset", ctypes.c_uint32)]


class _Event(ctypes.Structure):
    _fields_ = [("kind", ctypes.c_int), ("site", ctypes.c_int32), ("control", ctypes.c_void_p),
                ("control_length", ctypes.c_size_t), ("rec", ctypes.c_void_p), ("rec_length", ctypes.c_size_t),
                ("lsn", _LSN), ("flags", ctypes.c_uint32)]


class _ChannelMessage(ctypes.Structure):
    # repbroker_channel_message, field for field.
    _fields_ = [("channel", ctypes.c_char_p), ("site", ctypes.c_int32), ("is_request", ctypes.c_int),
                ("request_id", ctypes.c_uint64), ("requester", ctypes.c_uint32), ("payload", ctypes.c_void_p),
                ("payload_length", ctypes.c_size_t)]


class _Stats(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in ("messages_sent", "bytes_sent", "messages_received",
                                                     "bytes_received", "permanent_acked", "permanent_failed")]


def _load():
    path = os.environ.get("REPBROKER_LIBRARY") or ctypes.util.find_library("repbroker") or "librepbroker.so"
    lib = ctypes.CDLL(path)
    lib.repbroker_options_init.argtypes = [ctypes.POINTER(_Options)]
    lib.repbroker_open.argtypes = [ctypes.POINTER(_Options), ctypes.POINTER(ctypes.c_void_p)]
    lib.repbroker_close.argtypes = [ctypes.c_void_p]
    lib.repbroker_send.argtypes = [ctypes.c_void_p, ctypes.c_int32, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p,
                                   ctypes.c_size_t, ctypes.POINTER(_LSN), ctypes.c_uint32]
    lib.repbroker_next_event.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(_Event)]
    lib.repbroker_acknowledge.argtypes = [ctypes.c_void_p, _LSN, ctypes.c_int32]
    lib.repbroker_announce_master.argtypes = [ctypes.c_void_p, ctypes.c_int32]
    lib.repbroker_site_id.argtypes = [ctypes.c_void_p]
    lib.repbroker_site_id.restype = ctypes.c_int32
    lib.repbroker_max_message.argtypes = [ctypes.c_void_p]
    lib.repbroker_max_message.restype = ctypes.c_uint64
    lib.repbroker_is_receiver.argtypes = [ctypes.c_void_p]
    lib.repbroker_get_stats.argtypes = [ctypes.c_void_p, ctypes.POINTER(_Stats)]
    lib.repbroker_subscribe.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.repbroker_channel_send.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int32, ctypes.c_char_p,
                                           ctypes.c_size_t, ctypes.c_int]
    lib.repbroker_request.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int32, ctypes.c_char_p,
                                      ctypes.c_size_t, ctypes.c_int, ctypes.POINTER(ctypes.c_void_p),
                                      ctypes.POINTER(ctypes.c_size_t)]
    lib.repbroker_next_channel_message.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(_ChannelMessage)]
    lib.repbroker_reply.argtypes = [ctypes.c_void_p, ctypes.POINTER(_ChannelMessage), ctypes.c_char_p, ctypes.c_size_t]
    lib.repbroker_free.argtypes = [ctypes.c_void_p]
    lib.repbroker_strerror.argtypes = [ctypes.c_int]
    lib.repbroker_strerror.restype = ctypes.c_char_p
    lib.repbroker_last_error.argtypes = [ctypes.c_void_p]
    lib.repbroker_last_error.restype = ctypes.c_char_p
    return lib


_lib = None


def library():
    """The loaded librepbroker (loaded on first use)."""
    global _lib
    if _lib is None:
        _lib = _load()
    return _lib


class Client:
    """One registered connection to the local broker (see repbroker_client.h)."""

    def __init__(self, socket_path=None, group="default", name="", roles=("sender",), ack_policy="none",
                 ack_timeout=1.0, send_timeout=5.0, reconnect=True, transport="auto", ring_bytes=1 << 20):
        lib = library()
        options = _Options()
        lib.repbroker_options_init(ctypes.byref(options))
        self._keep = [s.encode() if s is not None else None for s in (socket_path, group, name)]
        options.socket_path, options.group, options.name = self._keep
        options.roles = sum(_ROLES[role] for role in roles)
        options.ack_policy = _ACK_POLICIES[ack_policy]
        options.ack_timeout_ms = max(1, int(ack_timeout * 1000))
        options.send_timeout_ms = max(1, int(send_timeout * 1000))
        options.reconnect = 1 if reconnect else 0
        options.transport = _TRANSPORTS[transport]
        options.ring_bytes = ring_bytes
        handle = ctypes.c_void_p()
        code = lib.repbroker_open(ctypes.byref(options), ctypes.byref(handle))
        if code:
            reason = lib.repbroker_last_error(None).decode(errors="replace")
            raise RepbrokerError(code, lib.repbroker_strerror(code).decode(), reason)
        self._handle = handle

    def _check(self, code):
        if code:
            lib = library()
            reason = lib.repbroker_last_error(self._handle).decode(errors="replace") if self._handle else ""
            raise RepbrokerError(code, lib.repbroker_strerror(code).decode(), reason)

    def send(self, eid, control=b"", rec=b"", lsn=None, flags=0):
        """Sends to a site id, EID_BROADCAST or EID_MASTER; with REP_PERMANENT, waits for the ack policy."""
        at = _LSN(*lsn) if lsn is not None else None
        self._check(library().repbroker_send(self._handle, eid, bytes(control), len(control), bytes(rec), len(rec),
                                             ctypes.byref(at) if at is not None else None, flags & 0xF))

    def next_event(self, timeout=None):
        """The next Message, SiteUp or SiteDown; None after `timeout` seconds (None: wait for ever)."""
        event = _Event()
        milliseconds = -1 if timeout is None else max(0, int(timeout * 1000))
        code = library().repbroker_next_event(self._handle, milliseconds, ctypes.byref(event))
        if code == _ETIMEDOUT:
            return None
        self._check(code)
        if event.kind == 1:
            return Message(event.site, ctypes.string_at(event.control, event.control_length) if event.control_length else b"",
                           ctypes.string_at(event.rec, event.rec_length) if event.rec_length else b"",
                           (event.lsn.file, event.lsn.offset), event.flags)
        return SiteUp(event.site) if event.kind == 2 else SiteDown(event.site)

    def acknowledge(self, lsn, site):
        """As this site's receiver: site `site`'s log (the source of the message whose DB_REP_ISPERM this is)
        is durable here up to `lsn` (file, offset)."""
        self._check(library().repbroker_acknowledge(self._handle, _LSN(*lsn), site))

    def announce_master(self, site):
        self._check(library().repbroker_announce_master(self._handle, site))

    @property
    def site_id(self):
        return library().repbroker_site_id(self._handle)

    @property
    def max_message(self):
        """The broker's limit on control + rec, in bytes."""
        return library().repbroker_max_message(self._handle)

    @property
    def is_receiver(self):
        return bool(library().repbroker_is_receiver(self._handle))

    def stats(self):
        """The client's counters: messages and bytes sent and received, PERMANENT sends acked and failed."""
        counters = _Stats()
        self._check(library().repbroker_get_stats(self._handle, ctypes.byref(counters)))
        return {name: getattr(counters, name) for name, _ in _Stats._fields_}

    # Application channels: never mixed with replication traffic; a destination is one site.

    def subscribe(self, channel):
        """Takes a share (round-robin among subscribers) of `channel`'s messages at this site."""
        self._check(library().repbroker_subscribe(self._handle, channel.encode()))

    def channel_send(self, channel, site, payload, timeout=5.0):
        """Sends `payload` on `channel` to one subscriber at `site` (or EID_MASTER); returns once one has it."""
        payload = bytes(payload)
        self._check(library().repbroker_channel_send(self._handle, channel.encode(), site, payload, len(payload),
                                                     _milliseconds(timeout)))

    def request(self, channel, site, payload, timeout=5.0):
        """Sends a request on `channel` to `site` (or EID_MASTER) and returns the subscriber's reply (bytes)."""
        payload = bytes(payload)
        reply, length = ctypes.c_void_p(), ctypes.c_size_t()
        lib = library()
        self._check(lib.repbroker_request(self._handle, channel.encode(), site, payload, len(payload),
                                          _milliseconds(timeout), ctypes.byref(reply), ctypes.byref(length)))
        try:
            return ctypes.string_at(reply, length.value) if length.value else b""
        finally:
            lib.repbroker_free(reply)

    def next_channel_message(self, timeout=None):
        """The next ChannelMessage on a subscribed channel; None after `timeout` seconds (None: wait for ever)."""
        message = _ChannelMessage()
        code = library().repbroker_next_channel_message(self._handle, -1 if timeout is None else _milliseconds(timeout),
                                                        ctypes.byref(message))
        if code == _ETIMEDOUT:
            return None
        self._check(code)
        payload = ctypes.string_at(message.payload, message.payload_length) if message.payload_length else b""
        return ChannelMessage(message.channel.decode(errors="replace"), message.site, bool(message.is_request),
                              message.request_id, message.requester, payload)

    def reply(self, request, payload):
        """Answers a request taken with next_channel_message."""
        payload = bytes(payload)
        message = _ChannelMessage(request.channel.encode(), request.site, 1 if request.is_request else 0,
                                  request.request_id, request.requester, None, 0)
        self._check(library().repbroker_reply(self._handle, ctypes.byref(message), payload, len(payload)))

    def close(self):
        if self._handle:
            library().repbroker_close(self._handle)
            self._handle = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _milliseconds(seconds):
    return max(0, int(seconds * 1000))


class Writer:
    """A writer process's transport: a sender-only Client set as a bsddb3 DBEnv's rep_set_transport. Every log
    record the process writes goes to the broker; a commit's PERMANENT send waits for the ack policy, and a
    failed one is counted in `perm_failed` (Berkeley DB then flushes its log locally and the commit returns)."""

    def __init__(self, client):
        self.client = client
        self.perm_acked = 0
        self.perm_failed = 0
        self.last_error = None

    def _send(self, env, control, rec, lsn, eid, flags):
        try:
            self.client.send(eid, control or b"", rec or b"", lsn=lsn, flags=flags)
        except RepbrokerError as error:
            if flags & REP_PERMANENT:
                self.perm_failed += 1
                self.last_error = error
            return _DB_REP_UNAVAIL
        if flags & REP_PERMANENT:
            self.perm_acked += 1
        return 0

    def close(self):
        """Closes the client: after DBEnv.close."""
        self.client.close()


_DB_REP_UNAVAIL = -30975  # db.h's DB_REP_UNAVAIL: "not sent" to Berkeley DB


def attach_writer(dbenv, socket_path=None, group="default", name="", ack_policy="quorum", ack_timeout=1.0,
                  send_timeout=5.0, transport="auto"):
    """Makes `dbenv` (a bsddb3 DBEnv, before or after its open) a writer of its site: a sender-only Client with
    `ack_policy` as its transport (rep_set_transport with the broker's site id). The site's replication process
    is repbroker-site. Returns the Writer; close it after dbenv.close()."""
    client = Client(socket_path=socket_path, group=group, name=name, roles=("sender",), ack_policy=ack_policy,
                    ack_timeout=ack_timeout, send_timeout=send_timeout, transport=transport)
    writer = Writer(client)
    try:
        dbenv.rep_set_transport(client.site_id, writer._send)
    except Exception:
        client.close()
        raise
    return writer
