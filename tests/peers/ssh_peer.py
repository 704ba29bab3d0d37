#!/usr/bin/python3
"""Misbehaving SSH servers for the sftp connector's tests, on 127.0.0.1.

One listener per mode, each at a free port; the ports go to --port-file as
"MODE PORT" lines once every listener listens. Modes:
  garbage         a banner line that is not SSH, then bytes that are not
                  SSH either, then close
  silent          accepts and never sends a byte (reads and drops input)
  banner-silent   a valid SSH banner, then nothing
  banner-garbage  a valid SSH banner, then random bytes, then close
  truncated       a valid SSH banner, then the first bytes of a packet that
                  announces 1000 bytes, then close
  huge            a valid SSH banner, then a packet announcing 2 GiB and
                  zeros for as long as the client reads
"""
import argparse
import os
import socket
import threading

BANNER = b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"
MODES = ("garbage", "silent", "banner-silent", "banner-garbage", "truncated", "huge")
STOP = threading.Event()


def drain(conn):
    """Reads and drops what the client sends until it closes."""
    try:
        while conn.recv(65536):
            pass
    except OSError:
        pass


def serve(mode, conn):
    try:
        conn.settimeout(600)
        if mode == "garbage":
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n" + os.urandom(4096))
        elif mode == "silent":
            drain(conn)
        elif mode == "banner-silent":
            conn.sendall(BANNER)
            drain(conn)
        elif mode == "banner-garbage":
            conn.sendall(BANNER + os.urandom(8192))
        elif mode == "truncated":
            conn.sendall(BANNER + (1000).to_bytes(4, "big") + b"\x04\x14" + os.urandom(40))
        elif mode == "huge":
            conn.sendall(BANNER + (0x7FFFFFF0).to_bytes(4, "big") + b"\x04\x14")
            zeros = bytes(65536)
            while not STOP.is_set():
                conn.sendall(zeros)
    except OSError:
        pass
    finally:
        conn.close()


def listen(mode, srv):
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=serve, args=(mode, conn), daemon=True).start()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    a = ap.parse_args()
    lines = []
    for mode in MODES:
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", 0))
        srv.listen(16)
        lines.append("%s %d\n" % (mode, srv.getsockname()[1]))
        threading.Thread(target=listen, args=(mode, srv), daemon=True).start()
    tmp = a.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.writelines(lines)
    os.rename(tmp, a.port_file)
    try:
        STOP.wait()
    finally:
        STOP.set()


if __name__ == "__main__":
    main()
