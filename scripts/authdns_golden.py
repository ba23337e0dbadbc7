#!/usr/bin/python3
# Golden data for src/proto/authdns_tests.rs: runs Debian pagekite.py's own
# LookupDomainQuota/GetDomainQuota with gethostbyname_ex replaced by a stub,
# and prints the name it looked up and the verdict for each answer address.
# Usage: /usr/bin/python3 scripts/authdns_golden.py
import socket
from pagekite import pk

names = []
answer = ['127.0.0.1']
def fake(name):
    names.append(name)
    return (name, [], list(answer))
socket.gethostbyname_ex = fake

pk.logging.LogError = lambda *a, **k: None
pk.logging.LogWarning = lambda *a, **k: None
c = pk.PageKite()
c.isfrontend = True
c.server_protos = ['http', 'https', 'raw', 'websocket']
c.server_ports = [80, 8080]
c.server_raw_ports = [22]
c.auth_domain = 'auth.example.net'
c.auth_domains = {'example.org': 'org-auth.example.net', 'deep.example.org': 'deep-auth.example.net'}

cases = [
    ('http', 'kite.example.com', 'srand1', 't1234567abcdef', 'a1b2c3d4e5f6'),
    ('http-8080', 'a.example.org', 'abc', 'tdeadbee', '0badc0de1234'),
    ('raw-22', 'x.deep.example.org', 's', 't', 'g'),
    ('http', '*.wild.example.com', 'r', 'tok', 'sig'),
]
for proto, domain, srand, token, sign in cases:
    del names[:]
    c.GetDomainQuota(proto, domain, srand, token, sign, check_token=False)
    print('NAME %s %s %s %s %s %s' % (proto, domain, srand, token, sign, names[0]))
for ip in ['127.0.0.1', '0.0.0.0', '1.2.3.4', '255.255.254.255', '255.255.255.0', '255.255.255.1', '255.255.255.2']:
    answer[:] = [ip]
    r = c.GetDomainQuota('http', 'kite.example.com', 's', 't', 'g', check_token=False)
    print('ANSWER %s quota=%s reason=%s' % (ip, r[0], r[5]))
