#!/usr/bin/python3
"""smtp_peer.py: a small scripted SMTP peer for the failure cases a real Postfix will not give
(tests/lua/smtp*.t). Listens on ADDR, port 0 (the kernel picks one), writes the port to
PORTFILE, logs every connection and every line it receives to LOG, serves until killed.

  smtp_peer.py ADDR MODE PORTFILE LOG [CERT KEY]

MODE: silent    accept and never say anything (the client must time out)
      garbage   answer with an HTTP status line, then close
      close     accept and close at once
      plain     ESMTP without STARTTLS; DATA answered "250 2.0.0 Ok: queued as PEER42"
      tls       ESMTP offering STARTTLS (CERT/KEY), the same dialogue inside TLS
      tls454    offers STARTTLS but answers 454 4.7.0
      inject    answers STARTTLS with "220" and a second reply in the same packet
      stall     normal until RCPT, then never answers DATA
      udpsilent a UDP socket that reads DNS queries and never answers
"""
import os, socket, ssl, sys, threading

addr, mode, portfile, logfile = sys.argv[1:5]
cert, key = (sys.argv[5], sys.argv[6]) if len(sys.argv) > 6 else (None, None)
lock = threading.Lock()


def log(line):
    with lock, open(logfile, "a") as f:
        f.write(line + "\n")


def lines(f):
    while True:
        raw = f.readline(4096)
        if not raw:
            return
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        log("C " + line)
        yield line


def dialogue(conn):
    tls_on = False
    f = conn.makefile("rwb", buffering=0)

    def say(s):
        f.write(s.encode() + b"\r\n")

    say("220-peer.test ESMTP scripted peer")
    say("220 peer.test second greeting line")
    while True:
        in_data = False
        for line in lines(f):
            verb = line[:4].upper()
            if in_data:
                if line == ".":
                    in_data = False
                    if mode == "stall":
                        return
                    say("250 2.0.0 Ok: queued as PEER42")
                continue
            if verb in ("EHLO", "LHLO"):
                say("250-peer.test")
                say("250-PIPELINING")
                if mode in ("tls", "tls454", "inject") and not tls_on:
                    say("250-STARTTLS")
                say("250 ENHANCEDSTATUSCODES")
            elif verb == "HELO":
                say("250 peer.test")
            elif line.upper() == "STARTTLS":
                if mode == "tls454":
                    say("454 4.7.0 TLS not available due to local problem")
                    continue
                if mode == "inject":
                    f.write(b"220 2.0.0 Ready to start TLS\r\n250 injected reply\r\n")
                    return
                say("220 2.0.0 Ready to start TLS")
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.load_cert_chain(cert, key)
                conn = ctx.wrap_socket(conn, server_side=True)
                f = conn.makefile("rwb", buffering=0)
                tls_on = True
                log("TLS on")
                break          # restart the line reader on the TLS stream
            elif verb == "MAIL":
                say("250 2.1.0 Ok")
            elif verb == "RCPT":
                if "unknown" in line:
                    say("550 5.1.1 <unknown@peer.test>: Recipient address rejected: User unknown")
                else:
                    say("250 2.1.5 Ok")
            elif verb == "DATA":
                if mode == "stall":
                    continue
                say("354 End data with <CR><LF>.<CR><LF>")
                in_data = True
            elif verb == "QUIT":
                say("221 2.0.0 Bye")
                return
            else:
                say("502 5.5.2 Error: command not recognized")
        else:
            return


def handle(conn):
    log("CONNECT")
    try:
        if mode == "silent":
            conn.recv(1)            # blocks until the client gives up
        elif mode == "garbage":
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        elif mode == "close":
            pass
        else:
            dialogue(conn)
    except Exception as e:      # a client that hangs up mid-dialogue is normal here
        log("EXC " + repr(e))
    finally:
        conn.close()


def publish(portfile, port):
    with open(portfile + ".tmp", "w") as f:
        f.write(str(port))
    os.rename(portfile + ".tmp", portfile)


def main():
    if mode == "udpsilent":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((addr, 0))
        publish(portfile, s.getsockname()[1])
        while True:
            data, peer = s.recvfrom(4096)
            log("QUERY %d bytes" % len(data))
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((addr, 0))
    srv.listen(16)
    publish(portfile, srv.getsockname()[1])
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


main()
