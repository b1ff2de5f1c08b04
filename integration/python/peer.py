"""peer.py URL -- Python's websocket-client as a wsroom peer.

Driven by ../exec_peer_test.go and run with /usr/bin/python3 (Debian's
python3-websocket). It reads a JSON spec from stdin,
[{"type": "text"|"binary", "data": base64}, ...], sends each message to URL
and waits for its echo, then closes with 1000 "done" and waits for the
server's close frame. It prints one JSON report on stdout:
{"received": [...same form...], "closeCode": N}, plus "error" if something
went wrong. The Go test judges the report.
"""
import base64
import json
import struct
import sys

import websocket


def main():
    url = sys.argv[1]
    spec = json.load(sys.stdin)
    report = {"received": [], "closeCode": 0}
    try:
        ws = websocket.create_connection(url, timeout=20)
        for m in spec:
            data = base64.b64decode(m["data"])
            if m["type"] == "text":
                ws.send(data.decode("utf-8"))
            else:
                ws.send_binary(data)
            opcode, got = ws.recv_data()
            kind = "text" if opcode == websocket.ABNF.OPCODE_TEXT else "binary"
            if isinstance(got, str):
                got = got.encode("utf-8")
            report["received"].append({"type": kind, "data": base64.b64encode(got).decode("ascii")})
        ws.send_close(1000, b"done")
        while True:
            frame = ws.recv_frame()
            if frame.opcode == websocket.ABNF.OPCODE_CLOSE:
                if len(frame.data) >= 2:
                    report["closeCode"] = struct.unpack("!H", frame.data[:2])[0]
                break
        ws.shutdown()
    except Exception as e:  # the report carries it to the Go test
        report["error"] = "%s: %s" % (type(e).__name__, e)
    json.dump(report, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
