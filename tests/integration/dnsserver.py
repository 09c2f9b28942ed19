"""
A small authoritative DNS server for tests, on 127.0.0.1 (UDP and TCP), built
with dnspython and run in a thread: it serves zone data a test writes as a
dict, follows CNAME chains inside that data (as an authoritative server
does), answers NXDOMAIN for names it does not know, and SERVFAIL for names
listed in C{servfail}.

    records = {
        "remote.example": [("MX", "10 mx1.remote.example."), ("MX", "20 mx2.remote.example.")],
        "mx1.remote.example": [("A", "127.0.0.2")],
        "alias.example": [("CNAME", "remote.example.")],
    }
    with DNSServer(records, servfail={"broken.example"}) as dns:
        dns.port  # the UDP/TCP port on 127.0.0.1
"""

import socket
import socketserver
import threading

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

TTL = 300


class DNSServer:
    def __init__(self, records, servfail=(), ttl=TTL):
        self.records = {k.lower().rstrip("."): v for k, v in records.items()}
        self.servfail = {n.lower().rstrip(".") for n in servfail}
        self.ttl = ttl
        self.queries = []
        self._udp = None
        self._tcp = None

    # -- answering

    def answer(self, wire):
        query = dns.message.from_wire(wire)
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        question = query.question[0]
        name = question.name.to_text().lower().rstrip(".")
        rdtype = dns.rdatatype.to_text(question.rdtype)
        self.queries.append((name, rdtype))
        current = name
        for _ in range(8):
            if current in self.servfail:
                response.set_rcode(dns.rcode.SERVFAIL)
                return response.to_wire()
            entries = self.records.get(current)
            if entries is None:
                if current == name:
                    response.set_rcode(dns.rcode.NXDOMAIN)
                return response.to_wire()
            cname = [v for t, v in entries if t == "CNAME"]
            if cname and rdtype != "CNAME":
                rrset = dns.rrset.from_text(
                    current + ".", self.ttl, "IN", "CNAME", cname[0]
                )
                response.answer.append(rrset)
                current = cname[0].lower().rstrip(".")
                continue
            values = [v for t, v in entries if t == rdtype]
            if values:
                rrset = dns.rrset.from_text(
                    current + ".", self.ttl, "IN", rdtype, *values
                )
                response.answer.append(rrset)
            return response.to_wire()
        return response.to_wire()

    # -- serving

    def start(self):
        server = self

        class UDPHandler(socketserver.BaseRequestHandler):
            def handle(self):
                data, sock = self.request
                sock.sendto(server.answer(data), self.client_address)

        class TCPHandler(socketserver.BaseRequestHandler):
            def handle(self):
                head = self.request.recv(2)
                if len(head) < 2:
                    return
                length = int.from_bytes(head, "big")
                data = b""
                while len(data) < length:
                    chunk = self.request.recv(length - len(data))
                    if not chunk:
                        return
                    data += chunk
                out = server.answer(data)
                self.request.sendall(len(out).to_bytes(2, "big") + out)

        # One port for both: bind UDP first, then TCP on the same number.
        for _ in range(20):
            udp = socketserver.ThreadingUDPServer(("127.0.0.1", 0), UDPHandler)
            port = udp.server_address[1]
            try:
                tcp = socketserver.ThreadingTCPServer(("127.0.0.1", port), TCPHandler)
            except OSError:
                udp.server_close()
                continue
            break
        udp.daemon_threads = tcp.daemon_threads = True
        self._udp, self._tcp = udp, tcp
        self.port = port
        for s in (udp, tcp):
            threading.Thread(
                target=s.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            ).start()
        return self

    def stop(self):
        for s in (self._udp, self._tcp):
            if s is not None:
                s.shutdown()
                s.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _selfTest():
    with DNSServer({"a.example": [("A", "127.0.0.9")]}) as server:
        import dns.resolver

        r = dns.resolver.Resolver(configure=False)
        r.nameservers = ["127.0.0.1"]
        r.port = server.port
        print(r.resolve("a.example", "A").rrset)


if __name__ == "__main__":
    _selfTest()
