#!/usr/bin/python3
"""A misbehaving SFTP server for the sftp connector's tests.

Run by a real sshd as its sftp subsystem (`Subsystem sftp /usr/bin/python3
sftp_peer.py MODE_FILE`): SSH, the host key and the login are OpenSSH's own,
and what happens inside the SFTP channel is this script's. It speaks SFTP
version 3 on stdin and stdout. The mode is read from MODE_FILE when a session
starts, so one server plays each part in turn:
  hang-init     reads the client's INIT and never answers
  garbage-init  answers INIT with bytes that are not SFTP
  huge-init     answers INIT with a packet announcing 2 GiB
  hang          a proper VERSION, then never answers a request
  truncated     a proper VERSION, then half an answer to the first request
                and the end of the channel
  endless-list  a proper VERSION; a directory whose listing never ends
                (READDIR always answers 50 more names)
  endless-file  a proper VERSION; a file whose attributes say 10 bytes and
                whose reads never reach the end
  short-file    a proper VERSION; a file whose attributes say 64 MiB and
                whose reads end at 16 MiB (it shrank after its size was read)
"""
import os
import struct
import sys

FXP_INIT, FXP_VERSION = 1, 2
FXP_OPEN, FXP_CLOSE, FXP_READ = 3, 4, 5
FXP_LSTAT, FXP_FSTAT = 7, 8
FXP_OPENDIR, FXP_READDIR = 11, 12
FXP_REALPATH, FXP_STAT = 16, 17
FX_EOF = 1
SHORT_SIZE, SHORT_END = 64 << 20, 16 << 20
FXP_STATUS, FXP_HANDLE, FXP_DATA, FXP_NAME, FXP_ATTRS = 101, 102, 103, 104, 105
ATTR_SIZE, ATTR_PERMISSIONS, ATTR_ACMODTIME = 0x1, 0x4, 0x8

inp = sys.stdin.buffer
out = sys.stdout.buffer


def read_exact(n):
    data = b""
    while len(data) < n:
        chunk = inp.read(n - len(data))
        if not chunk:
            sys.exit(0)
        data += chunk
    return data


def read_packet():
    (length,) = struct.unpack(">I", read_exact(4))
    body = read_exact(length)
    return body[0], body[1:]


def send(kind, payload):
    out.write(struct.pack(">IB", len(payload) + 1, kind) + payload)
    out.flush()


def string(b):
    return struct.pack(">I", len(b)) + b


def attrs(size, mode):
    return struct.pack(">IQII", ATTR_SIZE | ATTR_PERMISSIONS | ATTR_ACMODTIME, size, mode, 0) + \
        struct.pack(">I", 0)


def hang():
    """Answers nothing until the client goes away."""
    while inp.read(65536):
        pass
    sys.exit(0)


def main():
    with open(sys.argv[1]) as f:
        mode = f.read().strip()
    kind, _ = read_packet()
    if kind != FXP_INIT:
        sys.exit(1)
    if mode == "hang-init":
        hang()
    if mode == "garbage-init":
        out.write(b"\x00\x00\x00\x05\x63garbage, not SFTP" + os.urandom(64))
        out.flush()
        hang()
    if mode == "huge-init":
        out.write(struct.pack(">IB", 0x7FFFFFF0, FXP_VERSION) + bytes(4096))
        out.flush()
        hang()
    send(FXP_VERSION, struct.pack(">I", 3))
    listed = 0
    while True:
        kind, body = read_packet()
        (rid,) = struct.unpack(">I", body[:4])
        rid_b = body[:4]
        if mode == "hang":
            hang()
        if mode == "truncated":
            out.write(struct.pack(">IB", 200, FXP_STATUS) + rid_b + b"\x00\x00")
            out.flush()
            sys.exit(0)
        if kind in (FXP_OPEN, FXP_OPENDIR):
            send(FXP_HANDLE, rid_b + string(b"h%d" % rid))
        elif kind in (FXP_STAT, FXP_LSTAT, FXP_FSTAT):
            size = SHORT_SIZE if mode == "short-file" else 10
            send(FXP_ATTRS, rid_b + attrs(size, 0o100644))
        elif kind == FXP_READDIR:
            names = b""
            for _ in range(50):
                listed += 1
                name = b"f%d" % listed
                names += string(name) + string(name) + attrs(1, 0o100644)
            send(FXP_NAME, rid_b + struct.pack(">I", 50) + names)
        elif kind == FXP_READ:
            offset, length = struct.unpack(">QI", body[-12:])
            if mode == "short-file" and offset >= SHORT_END:
                send(FXP_STATUS, rid_b + struct.pack(">I", FX_EOF) + string(b"") +
                     string(b""))
                continue
            if mode == "short-file":
                length = min(length, SHORT_END - offset)
            send(FXP_DATA, rid_b + string(b"x" * min(length, 32768)))
        elif kind == FXP_REALPATH:
            send(FXP_NAME, rid_b + struct.pack(">I", 1) + string(b"/") + string(b"/") +
                 attrs(0, 0o40755))
        else:
            send(FXP_STATUS, rid_b + struct.pack(">I", 0) + string(b"") + string(b""))


if __name__ == "__main__":
    main()
