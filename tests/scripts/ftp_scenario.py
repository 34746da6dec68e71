# An FTP client that plays one scenario against a server, for the session
# tests. Usage: ftp_scenario.py SCENARIO HOST [ARG]. It prints what it saw
# as the last line of stdout (a reply code, an errno name, `ok`); scenarios
# that wait for the test print `ready` and read one line from stdin first.
# Every socket has a timeout: nothing here can hang the test.

import errno
import socket
import ssl
import sys
import time

scenario, host = sys.argv[1], sys.argv[2]
arg = sys.argv[3] if len(sys.argv) > 3 else None
TIMEOUT = 30


def connect(port=21):
    return socket.create_connection((host, port), timeout=TIMEOUT)


class Control:
    def __init__(self, sock):
        self.sock = sock
        self.file = sock.makefile("rb")

    def reply(self):
        line = self.file.readline()
        if not line:
            return "EOF"
        code = line[:3]
        if line[3:4] == b"-":
            while True:
                line = self.file.readline()
                if not line or (line[:3] == code and line[3:4] == b" "):
                    break
        return line.decode("ascii", "replace").strip()

    def cmd(self, text):
        self.sock.sendall(text.encode() + b"\r\n")
        return self.reply()

    def login(self):
        greeting = self.reply()
        if not greeting.startswith("220"):
            return greeting
        said = self.cmd("USER anonymous")
        if said.startswith("331"):
            said = self.cmd("PASS guest@example.org")
        return said

    def pasv(self):
        said = self.cmd("PASV")
        numbers = said[said.index("(") + 1 : said.index(")")].split(",")
        return int(numbers[4]) * 256 + int(numbers[5])


def wait_for_go():
    print("ready", flush=True)
    sys.stdin.readline()


def errno_of(e):
    return errno.errorcode.get(e.errno, str(e.errno)) if e.errno else type(e).__name__


def main():
    if scenario == "idle":
        # Log in and say nothing: the server's idle timeout ends it.
        c = Control(connect())
        c.login()
        return c.reply()
    if scenario == "abort":
        # Start a download, read a little, hang up without QUIT or ABOR.
        c = Control(connect())
        c.login()
        c.cmd("TYPE I")
        port = c.pasv()
        data = socket.create_connection((host, port), timeout=TIMEOUT)
        c.cmd("RETR " + arg)
        data.recv(4096)
        data.close()
        c.sock.close()
        return "ok"
    if scenario == "late_data":
        # Ask for a file, then connect only after the server stopped
        # waiting for the data connection (its accept_timeout).
        c = Control(connect())
        c.login()
        port = c.pasv()
        said = c.cmd("RETR " + arg)
        try:
            socket.create_connection((host, port), timeout=TIMEOUT).close()
        except OSError as e:
            said = said + " then " + errno_of(e)
        c.cmd("QUIT")
        return said
    if scenario in ("noop_after_go", "stall"):
        # Log in, wait for the test (which breaks something), then talk.
        c = Control(connect())
        c.login()
        wait_for_go()
        try:
            said = c.cmd("NOOP")
            if scenario == "stall":
                # The server was killed with our NOOP unread: its reset
                # arrives as the next read fails.
                said = c.reply()
            return said
        except OSError as e:
            return errno_of(e)
    if scenario == "keepalive":
        # Log in, wait for the test to kill the path, then let keepalive
        # (1 s idle, 1 s interval, 3 probes) find the peer gone.
        c = Control(connect())
        c.login()
        wait_for_go()
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
        c.sock.settimeout(TIMEOUT)
        try:
            c.sock.recv(1024)
            return "no error"
        except OSError as e:
            return errno_of(e)
    if scenario == "upload_stall":
        # Start an upload to ARG, wait for the test (which stops the server
        # from reading), then send until the stopped receiver's zero window
        # holds the data back for 3 s (at most 256 MiB), and hang up.
        c = Control(connect())
        c.login()
        c.cmd("TYPE I")
        port = c.pasv()
        data = socket.create_connection((host, port), timeout=TIMEOUT)
        said = c.cmd("STOR " + arg)
        if not said.startswith("150"):
            return said
        wait_for_go()
        data.settimeout(3)
        chunk = bytes(65536)
        sent = 0
        try:
            while sent < 256 << 20:
                sent += data.send(chunk)
        except socket.timeout:
            data.close()
            c.sock.close()
            return "stalled"
        return "sent %d bytes" % sent
    if scenario == "ftplib_trusting_pasv":
        # Python's ftplib told to trust the 227's address (older clients
        # and many scripts do), downloading ARG; polite when it fails.
        import ftplib
        ftp = ftplib.FTP(timeout=TIMEOUT)
        ftp.trust_server_pasv_ipv4_address = True
        ftp.connect(host, 21)
        ftp.login()
        ftp.set_pasv(True)
        try:
            ftp.retrbinary("RETR " + arg, lambda block: None)
        except OSError as e:
            ftp.quit()
            return errno_of(e)
        ftp.quit()
        return "ok"
    if scenario == "hold":
        # Take a session slot and keep it until told to leave.
        c = Control(connect())
        greeting = c.login()
        wait_for_go()
        c.cmd("QUIT")
        return greeting
    if scenario == "greeting":
        return Control(connect()).reply()
    if scenario == "tls":
        # AUTH TLS, then a handshake that verifies the server's certificate
        # (self-signed: verification fails and the client hangs up).
        c = Control(connect())
        c.reply()
        said = c.cmd("AUTH TLS")
        if not said.startswith("234"):
            return said
        context = ssl.create_default_context()
        try:
            context.wrap_socket(c.sock, server_hostname="ftp.example.org")
            return "handshake completed"
        except ssl.SSLCertVerificationError:
            c.sock.close()
            return "CERTIFICATE_VERIFY_FAILED"
    if scenario == "tls_name":
        # TLS that trusts the server's certificate (ARG) but asks for a
        # name the certificate does not carry: Python has OpenSSL check the
        # name (check_hostname), and says what OpenSSL's check said.
        c = Control(connect())
        c.reply()
        said = c.cmd("AUTH TLS")
        if not said.startswith("234"):
            return said
        context = ssl.create_default_context(cafile=arg)
        try:
            context.wrap_socket(c.sock, server_hostname="other.example.org")
            return "handshake completed"
        except ssl.SSLCertVerificationError as e:
            c.sock.close()
            return e.verify_message
    if scenario == "ftps_download":
        # FTPS that trusts the server's certificate (ARG): AUTH TLS, login,
        # a protected download, QUIT.
        import ftplib
        context = ssl.create_default_context(cafile=arg)
        context.check_hostname = False
        ftps = ftplib.FTP_TLS(context=context, timeout=TIMEOUT)
        ftps.connect(host, 21)
        ftps.auth()
        ftps.login()
        ftps.prot_p()
        got = []
        ftps.retrbinary("RETR file", got.append)
        ftps.quit()
        return str(sum(len(b) for b in got))
    if scenario == "many":
        # ARG sessions in a row; every third downloads the file.
        done = 0
        for n in range(int(arg)):
            c = Control(connect())
            c.login()
            if n % 3 == 0:
                c.cmd("TYPE I")
                port = c.pasv()
                data = socket.create_connection((host, port), timeout=TIMEOUT)
                c.cmd("RETR file")
                while data.recv(65536):
                    pass
                data.close()
                c.reply()
            c.cmd("QUIT")
            c.sock.close()
            done += 1
        return str(done)
    raise SystemExit("unknown scenario " + scenario)


try:
    print(main(), flush=True)
except OSError as e:
    print(errno_of(e), flush=True)
