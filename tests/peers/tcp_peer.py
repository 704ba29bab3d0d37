#!/usr/bin/python3
"""A TCP peer that is no server at all, for the connector tests: it listens on
127.0.0.1 at a free port (written to --port-file) and, to every connection,
either says nothing and never closes (--mode silent) or sends a line of
bytes that no protocol expects and closes (--mode garbage)."""
import argparse
import os
import socket
import threading


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--mode", choices=["silent", "garbage"], required=True)
    a = ap.parse_args()
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    with open(a.port_file + ".tmp", "w") as f:
        f.write("%d\n" % s.getsockname()[1])
    os.rename(a.port_file + ".tmp", a.port_file)
    held = []
    while True:
        c, _ = s.accept()
        if a.mode == "silent":
            held.append(c)  # kept open, never answered
            continue
        try:
            c.sendall(b"\x00\xffNOT A PROTOCOL\r\n" * 4)
        except OSError:
            pass
        threading.Timer(0.2, c.close).start()


if __name__ == "__main__":
    main()
