//! The flag table: every option rkite takes, its pagekite.py name, whether
//! it takes a value and whether it repeats. The getopts parser, `--help`,
//! option-file checking and `--settings` are all built from this one table,
//! so they cannot disagree. Holds no state and does no I/O.

use super::compat;
use getopts::{HasArg, Occur, Options};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// A switch (`--isfrontend`); saying it twice is the same as once.
    Switch,
    /// One value (`--ports=LIST`); the last one given wins, as in pagekite.py.
    Value(&'static str),
    /// A value that may repeat (`--domain`); every one counts.
    Multi(&'static str),
}

#[derive(Clone, Copy)]
pub(super) struct Flag {
    pub short: &'static str,
    pub long: &'static str,
    pub kind: Kind,
    pub help: &'static str,
}

/// The table below as one string: a record per flag, its kind's name and
/// fields separated by U+001F and ended by U+001E. A `&[Flag]` of string
/// slices cost 72 bytes of relocated pointers a flag in the static binary;
/// this costs the text and one separator a field, and `FLAGS` splits it
/// again each time it is walked (start-up and `--help` only).
macro_rules! flag_table {
    ($($kind:ident $fields:tt),+ $(,)?) => {
        concat!($(flag_record!($kind $fields),)+)
    };
}

/// One record of `flag_table!`: only the four kinds `flag` reads, each with
/// exactly its fields, so a misspelt kind or a missing field does not
/// compile.
macro_rules! flag_record {
    (switch($short:literal, $long:literal, $help:literal $(,)?)) => {
        flag_record!(@ "switch", $short, $long, $help)
    };
    (value($short:literal, $long:literal, $hint:literal, $help:literal $(,)?)) => {
        flag_record!(@ "value", $short, $long, $hint, $help)
    };
    (multi($long:literal, $hint:literal, $help:literal $(,)?)) => {
        flag_record!(@ "multi", $long, $hint, $help)
    };
    (short_multi($short:literal, $long:literal, $hint:literal, $help:literal $(,)?)) => {
        flag_record!(@ "short_multi", $short, $long, $hint, $help)
    };
    (@ $kind:literal, $($field:literal),+) => {
        concat!($kind, $("\u{1f}", $field,)+ "\u{1e}")
    };
}

/// Every flag, in `--help`'s order.
pub(super) const FLAGS: Table<Flag> = Table {
    text: TABLE,
    record: flag,
};

/// A table kept as one string of records (see `flag_table!`), split again
/// each time it is walked: `iter()` and `for x in TABLE` give its records
/// by value, as a slice of them did.
pub(super) struct Table<T: 'static> {
    pub(super) text: &'static str,
    pub(super) record: fn(&'static str) -> T,
}

impl<T> Clone for Table<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Table<T> {}

impl<T> Table<T> {
    pub(super) fn iter(self) -> <Self as IntoIterator>::IntoIter {
        self.into_iter()
    }
}

impl<T> IntoIterator for Table<T> {
    type Item = T;
    type IntoIter = Records<T>;
    fn into_iter(self) -> Records<T> {
        Records {
            rest: self.text,
            record: self.record,
        }
    }
}

/// A `Table`'s records, one a call.
pub(super) struct Records<T: 'static> {
    rest: &'static str,
    record: fn(&'static str) -> T,
}

impl<T> Iterator for Records<T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        let record = split_off(&mut self.rest, '\u{1e}')?;
        Some((self.record)(record))
    }
}

/// The text before the first `end` in `rest`, which keeps what follows it;
/// None when `rest` is empty. Out of line: the tables are walked in many
/// places, and each would otherwise get its own copy of the search.
#[inline(never)]
fn split_off(rest: &mut &'static str, end: char) -> Option<&'static str> {
    if rest.is_empty() {
        return None;
    }
    let (first, after) = rest.split_once(end).unwrap_or((rest, ""));
    *rest = after;
    Some(first)
}

/// The fields of one record, one a call, in order ("" past the last).
pub(super) fn fields(record: &'static str) -> impl FnMut() -> &'static str {
    let mut rest = record;
    move || split_off(&mut rest, '\u{1f}').unwrap_or("")
}

/// A list of names kept as one string, each followed by a space (the
/// `words!` macro writes it from a list of literals), for the same reason
/// as `Table`: a `&[&str]` cost 16 bytes of relocated pointer a name.
#[derive(Clone, Copy)]
pub(super) struct Words(pub(super) &'static str);

macro_rules! words {
    ($($word:literal),+ $(,)?) => {
        crate::config::flags::Words(concat!($($word, " ",)+))
    };
}
pub(super) use words;

impl Words {
    pub(super) fn iter(self) -> std::str::SplitAsciiWhitespace<'static> {
        self.0.split_ascii_whitespace()
    }

    pub(super) fn contains(self, name: &&str) -> bool {
        self.iter().any(|w| w == *name)
    }
}

impl IntoIterator for Words {
    type Item = &'static str;
    type IntoIter = std::str::SplitAsciiWhitespace<'static>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// One record of `TABLE`: switch(short, long, help), value(short, long,
/// hint, help), multi(long, hint, help) or short_multi(short, long, hint,
/// help).
fn flag(record: &'static str) -> Flag {
    let mut next = fields(record);
    let kind = next();
    let short = if kind == "multi" { "" } else { next() };
    let long = next();
    let kind = match kind {
        "switch" => Kind::Switch,
        "value" => Kind::Value(next()),
        // multi, short_multi
        _ => Kind::Multi(next()),
    };
    Flag {
        short,
        long,
        kind,
        help: next(),
    }
}

const TABLE: &str = flag_table![
    switch(
        "f",
        "isfrontend",
        "Run as a frontend (relay) instead of a backend.",
    ),
    value(
        "h",
        "host",
        "IP",
        "Frontend: address to listen on (default: all interfaces).",
    ),
    value(
        "p",
        "ports",
        "LIST",
        "Frontend: comma-separated public ports (default 80).",
    ),
    value(
        "",
        "protos",
        "LIST",
        "Frontend: protocols kites may use (default http,http2,http3,https,websocket,irc,raw,xmpp).",
    ),
    value(
        "",
        "rawports",
        "LIST",
        "Frontend: ports for raw kites; `virtual` allows any port via CONNECT.",
    ),
    multi(
        "domain",
        "PROTOS:DOMAIN:SECRET",
        "Frontend: accept kites for DOMAIN (`*.x` or `unknown` allowed) signed with SECRET; PROTOS is a comma list or `*`. Repeatable.",
    ),
    multi(
        "frontend",
        "HOST:PORT",
        "Backend: frontend to keep a tunnel to. Repeatable.",
    ),
    value(
        "",
        "frontends",
        "N:NAME:PORT",
        "Backend: keep tunnels to the N fastest of NAME's addresses (all A and AAAA records), measured by a tunnel handshake, re-checked periodically and when one fails.",
    ),
    switch(
        "",
        "defaults",
        "Backend: pagekite.net's service defaults, as pagekite.py 1.5.2 sets them: --frontends=1:fe4_152.b5p.us:443, its --fe_certnames, --errorurl and --dyndns (later options win). --settings shows the expansion.",
    ),
    value(
        "",
        "whitelabel",
        "DOMAIN",
        "Backend: a white-label service's defaults: --frontends=1:fe4_152.DOMAIN:443, --fe_certname=fe.DOMAIN and DOMAIN (and pagekite.net's), error page and dynamic DNS at DOMAIN over http.",
    ),
    value(
        "",
        "whitelabels",
        "DOMAIN",
        "Backend: the same as --whitelabel, with https for the error page and dynamic DNS.",
    ),
    multi(
        "nofrontend",
        "HOST:PORT",
        "Backend: never use this frontend address, even if NAME of --frontends resolves to it. Repeatable.",
    ),
    multi(
        "service_on",
        "PROTO:DOMAIN:HOST:PORT:SECRET",
        "Backend: a kite; PROTO may be `http`, `http-8080` or `http/8080`, a comma list, or `ssh` (raw-22). Repeatable.",
    ),
    multi(
        "backend",
        "PROTO:DOMAIN:HOST:PORT:SECRET",
        "Same as --service_on.",
    ),
    value(
        "",
        "kitesecret",
        "SECRET",
        "Backend: secret for --service_on kites given without one; `@kitesecret` in a kite spec stands for it.",
    ),
    value(
        "",
        "kitename",
        "NAME",
        "Backend: the main kite's name; `@kitename` in a kite spec stands for it (pagekite.py's .rc files).",
    ),
    multi(
        "webpath",
        "HOST:PATH:POLICY:DIR",
        "Backend: share DIR (or a file) at URL PATH of `builtin` kites HOST (`*`, DOMAIN or DOMAIN/PORT); POLICY is default, public, private (needs --httppass) or otp (as private). Repeatable.",
    ),
    value(
        "",
        "webroot",
        "DIR",
        "Backend: share DIR at `/` of every `builtin` kite (as --webpath=*:/:POLICY:DIR, POLICY from --webaccess).",
    ),
    value(
        "",
        "webaccess",
        "POLICY",
        "Backend: --webroot's policy (default, public, private or otp).",
    ),
    value(
        "",
        "webindexes",
        "on|all|off",
        "Backend: list directories without an index.html (all: dot-files too), where a kite's +indexes does not say. Default off.",
    ),
    value(
        "X",
        "httppass",
        "PASSWORD",
        "Backend: the password (any user name) the built-in file server asks for on default and private paths.",
    ),
    multi(
        "service_off",
        "PROTO:DOMAIN:HOST:PORT:SECRET",
        "Backend: a kite that is configured but not flown (pagekite.py's disabled kite). Repeatable.",
    ),
    multi(
        "define_backend",
        "PROTO:DOMAIN:HOST:PORT:SECRET",
        "Same as --service_off.",
    ),
    switch(
        "",
        "abort_not_configured",
        "Stop with exit 1: the option file holding it was never edited (Debian's /etc/pagekite.d/10_account.rc).",
    ),
    value(
        "",
        "keepalive",
        "SECONDS",
        "Seconds of tunnel silence before a PING (default 60, at least 5).",
    ),
    multi(
        "tls_endpoint",
        "NAME:PEM",
        "Frontend: terminate TLS for NAME (`*.x` allowed) with the key and certificate chain in PEM. Repeatable.",
    ),
    value(
        "",
        "tls_default",
        "NAME",
        "Frontend: the --tls_endpoint for TLS clients that send no SNI.",
    ),
    multi(
        "fe_certname",
        "NAME",
        "Backend: reach the frontend over TLS (CONNECT NAME:443, then TLS) and require its certificate to be valid for NAME. Repeatable.",
    ),
    value(
        "",
        "ca_certs",
        "FILE",
        "Backend: CA certificates (PEM) for --fe_certname (default: the system bundle).",
    ),
    switch(
        "",
        "fe_nocertcheck",
        "Backend: TLS straight to the frontend without checking its certificate (insecure).",
    ),
    multi(
        "proxy",
        "URL",
        "Backend and client: reach frontends through a proxy: http://[USER:PASS@]HOST:PORT/ (HTTP CONNECT) or socks://[USER:PASS@]HOST:PORT/ (SOCKS5). Several chain, each reached through the ones before.",
    ),
    multi(
        "socksify",
        "HOST:PORT",
        "Backend and client: reach frontends through a SOCKS5 proxy (the same as --proxy=socks://HOST:PORT/).",
    ),
    multi(
        "torify",
        "HOST:PORT",
        "Backend and client: reach frontends through Tor's SOCKS5 port: frontend names go to it unresolved (no local DNS look-up) and --frontends pings are not sent.",
    ),
    switch(
        "",
        "noproxy",
        "Forget the --proxy, --socksify and --torify options given before it.",
    ),
    multi(
        "client_acl",
        "allow|deny:PATTERN",
        "Frontend: allow or deny public clients by IP (a regex matching the whole address, CIDR, `any` or `localhost`); first match decides. Repeatable.",
    ),
    multi(
        "tunnel_acl",
        "allow|deny:PATTERN",
        "Frontend: the same for backends' tunnels. Repeatable.",
    ),
    short_multi(
        "A",
        "authdomain",
        "[DOMAIN:]AUTHDOMAIN",
        "Frontend: check kites that have no matching --domain secret by a DNS look-up under AUTHDOMAIN, as pagekite.py does (the auth server holds the secrets); DOMAIN:AUTHDOMAIN for kites under DOMAIN only, a plain one resets those. Answers are cached for 5 minutes. Repeatable.",
    ),
    value(
        "",
        "authfile",
        "FILE",
        "Frontend: the users this relay serves, one a line: NAME SECRET DOMAINS PROTOS [MAX_TUNNELS] (comma lists; *.domain wildcards; PROTOS * for all; # comments). A kite one of them covers is accepted when signed with that user's secret; MAX_TUNNELS caps that user's tunnels. Read again on SIGHUP: a removed user's kites go down.",
    ),
    switch(
        "",
        "authfail_closed",
        "Frontend: refuse a kite when its --authdomain look-up fails (default: accept it, as pagekite.py).",
    ),
    value(
        "",
        "max_conns_per_ip",
        "N",
        "Frontend: connections one client (IPv4 address or IPv6 /64) may hold at once; backends' tunnels don't count (default 256; 0: no limit).",
    ),
    multi(
        "proxyproto_from",
        "CIDR",
        "Frontend: a load balancer's address (ADDR or ADDR/LEN): its connections to the public ports must begin with a PROXY protocol v1 or v2 header, and the visitor it names is the address ACLs, per-IP limits, RIP/X-Forwarded-For and logs use; a connection from it without one is closed, a header from any other address refused. Repeatable.",
    ),
    value(
        "",
        "proxyproto_ports",
        "LIST",
        "Frontend: the public ports --proxyproto_from applies to, comma-separated (default: all); on other ports the balancer's address is a client like any other.",
    ),
    value(
        "",
        "acme",
        "DIRECTORY_URL",
        "Frontend: get certificates for kites automatically from this ACME (RFC 8555) directory, e.g. https://acme-v02.api.letsencrypt.org/directory: a name gets one only while a backend flies it as an http or websocket kite, validated by HTTP-01 on the frontend's own port 80; then https://NAME is terminated here as with --tls_endpoint (which keeps priority). Needs --acme_dir.",
    ),
    value(
        "",
        "acme_email",
        "ADDRESS",
        "Frontend: the contact address of the ACME account.",
    ),
    value(
        "",
        "acme_dir",
        "DIR",
        "Frontend: where the ACME account key and the certificates are kept across restarts (created private to the user).",
    ),
    value(
        "",
        "acme_challenge",
        "http-01|tls-alpn-01",
        "Frontend: how the ACME server validates a name: http-01 on port 80, or tls-alpn-01 on port 443 (default: http-01, or tls-alpn-01 when --ports has 443 and not 80).",
    ),
    value(
        "",
        "acme_ca",
        "PEM",
        "Frontend: the CA certificates that the ACME server's own HTTPS is checked against (default: the system's), for a private ACME server.",
    ),
    value(
        "",
        "motd",
        "FILE",
        "Frontend: a message of the day for backends: the file's text (stripped, first 8192 characters) goes to every backend in the tunnel reply's X-PageKite-Misc, as pagekite.py sends it; re-read on SIGHUP.",
    ),
    multi(
        "ratelimit_ips",
        "[KITE:]IPS/SECONDS",
        "Frontend: a tunnel serves at most IPS different clients (address, and for HTTP its User-Agent and Accept-Language) within SECONDS; others get the 503 page. With KITE, for that kite and its subdomains (replacing the default for its tunnel); a tunnel serving several kites takes the strictest. Repeatable.",
    ),
    multi(
        "portalias",
        "PORT:ALIAS",
        "Frontend: connections to public port PORT are handled (routed, and reported to backends) as if they came to port ALIAS. Repeatable.",
    ),
    value(
        "",
        "accept_acl_file",
        "FILE",
        "Frontend: pagekite.py's accept list, consulted for every new connection: one `PATTERN POLICY [REASON]` a line (an address or a regex matched from its start; POLICY allow or deny), first match decides, no match allows. Re-read when it changes (checked at most once a second) and on SIGHUP.",
    ),
    value(
        "",
        "overload",
        "N",
        "Frontend: with N or more open connections, tell backends' pings (and 503 pages) X-PageKite-Overloaded, so backends with a --frontends pool prefer other relays. N is a baseline that load average and memory use adjust (0, the default: off).",
    ),
    value(
        "",
        "overload_file",
        "FILE",
        "Frontend: a file whose number replaces the overload level (read when the level is recalculated, every 20 s as in pagekite.py); needs --overload.",
    ),
    value(
        "",
        "overload_cpu",
        "FRACTION",
        "Frontend: share of the CPU (5-minute load average) the relay may use, for --overload's adjustment (default 0.75; 0 ignores CPU).",
    ),
    value(
        "",
        "overload_mem",
        "FRACTION",
        "Frontend: share of memory the relay may use, for --overload's adjustment (default 0.85, at most 1.5; 0 ignores memory; both 0: the level stays N).",
    ),
    multi(
        "be_config",
        "DOMAIN/PORT:KEY:VALUE",
        "Backend: a per-kite option, e.g. foo.example.com/80:password/bob:pw, .../ip/10.0.0.0/8:True, .../rewritehost:True. Repeatable.",
    ),
    value(
        "D",
        "dyndns",
        "PROVIDER",
        "Backend: once tunnels are up, and whenever the frontends a kite flies on change, tell a dynamic DNS provider their addresses, one update per kite, signed as pagekite.py signs: pagekite.net, USER:PASS@dyndns.org, USER:PASS@no-ip.com, or an http(s):// URL template with %(domain)s %(ip)s %(ips)s %(sign)s %(user)s %(pass)s. Failures retry after 112 s, doubling to about 30 min. Goes through --proxy when set; shown in --status_file.",
    ),
    short_multi(
        "E",
        "errorurl",
        "[DOMAIN:]URL",
        "Both: show URL (framed, as pagekite.py does) instead of the built-in page when a kite is unknown or its server is down; DOMAIN:URL for a domain and its subdomains. Repeatable.",
    ),
    multi(
        "service_cfg",
        "DOMAIN/PORT:KEY:VALUE",
        "Same as --be_config (the name pagekite.py writes).",
    ),
    switch(
        "",
        "insecure",
        "Backend: do not block dangerous-looking HTTP paths (pagekite.py's security filter).",
    ),
    value(
        "",
        "connect",
        "RELAY:PORT",
        "Client: connect to a relay and open TARGET:PORT (a raw kite) with HTTP CONNECT, relaying stdin/stdout (for ssh's ProxyCommand); TLS with --fe_certname or --fe_nocertcheck.",
    ),
    value(
        "",
        "buffers",
        "KIB",
        "KiB all buffers may hold together; past it new connections are refused (default 8192 on a backend, 131072 on a frontend). On a frontend one tunnel's streams may hold an eighth of it (at least 4 MiB) before that tunnel is paused.",
    ),
    value(
        "",
        "max_pipes",
        "N",
        "Pipes for kernel splicing at once (default 64): on plain hops bulk data moves socket to pipe to socket without entering rkite; a stream holds a pipe only while its data is in flight, and copies when none is free. 0 turns splicing off.",
    ),
    value(
        "",
        "max_conns",
        "N",
        "Connections at once: public ones and tunnels on a frontend, streams on a backend (default 16384 / 4096).",
    ),
    value(
        "",
        "stream_idle",
        "SECONDS",
        "Close a relayed connection after this long with no byte in either direction (default 3600, 0 = never).",
    ),
    value(
        "",
        "stop_grace",
        "SECONDS",
        "Seconds running streams may take to finish after SIGTERM/SIGINT (default 5).",
    ),
    value(
        "o",
        "optfile",
        "FILE",
        "Read options from FILE: one per line without the leading --, `#` comments, `END` stops; read where it appears, so later flags override it. Re-read on SIGHUP. Repeatable.",
    ),
    value(
        "O",
        "optdir",
        "DIR",
        "Read every DIR/*.rc option file, in name order. Repeatable.",
    ),
    switch(
        "",
        "settings",
        "Print the effective configuration in pagekite.py's option-file format (secrets in clear, as pagekite.py writes them) and exit.",
    ),
    value(
        "L",
        "logfile",
        "FILE",
        "Write the log to FILE instead of stderr (`stdio` = stderr).",
    ),
    switch(
        "Z",
        "daemonize",
        "Fork into the background after start-up (default: stay in the foreground, for procd and systemd).",
    ),
    value(
        "I",
        "pidfile",
        "FILE",
        "Write the process id to FILE while running; removed at exit.",
    ),
    value(
        "U",
        "runas",
        "USER[:GROUP]",
        "Drop root privileges to USER (and GROUP) once the listening ports are bound.",
    ),
    value(
        "",
        "status_file",
        "PATH",
        "Keep a JSON status (tunnels, kites, streams, bytes, RTT, errors, uptime) in PATH, replaced atomically on change, at most every 2 s.",
    ),
    value(
        "",
        "metrics",
        "ADDR:PORT",
        "Serve Prometheus metrics at http://ADDR:PORT/metrics and a health check at /healthz (unauthenticated: bind it where only your monitoring reaches).",
    ),
    switch(
        "v",
        "verbose",
        "More log output (-v: streams, -vv: chunks and bytes).",
    ),
    switch("q", "quiet", "Only warnings and errors."),
    switch(
        "",
        "debugio",
        "Log every chunk and byte count (trace level).",
    ),
    switch("", "help", "Show this help."),
    switch("", "version", "Show the version."),
];

/// pagekite.py flags that mean nothing for rkite; accepted so existing
/// command lines, scripts and option files keep working.
pub(super) const IGNORED_SWITCHES: Words = words![
    "clean",
    "nullui",
    "basicui",
    "remoteui",
    "nozchunks",
    "noloop",
    "autosave",
    "noautosave",
    "save",
    "nocrashreport",
    "noprobes",
    "nodaemonize",
];

/// The flag named `name` (underscores, no dashes), ignored ones and
/// pagekite.py's accepted and refused ones included.
pub(super) fn lookup(name: &str) -> Option<Kind> {
    if IGNORED_SWITCHES.contains(&name) {
        return Some(Kind::Switch);
    }
    if let Some(f) = FLAGS.iter().find(|f| f.long == name) {
        return Some(f.kind);
    }
    compat_kind(|_, long| long == name && !long.is_empty())
}

/// The flag whose short letter is `letter`.
pub(super) fn lookup_short(letter: &str) -> Option<Flag> {
    FLAGS
        .iter()
        .find(|f| !f.short.is_empty() && f.short == letter)
}

/// The kind of a short flag, pagekite.py's accepted and refused ones included.
pub(super) fn short_kind(letter: &str) -> Option<Kind> {
    lookup_short(letter)
        .map(|f| f.kind)
        .or_else(|| compat_kind(|short, _| short == letter && !short.is_empty()))
}

/// The kind of the first accepted or refused pagekite.py option that `is`.
fn compat_kind(is: impl Fn(&str, &str) -> bool) -> Option<Kind> {
    let accepted = compat::ACCEPTED
        .iter()
        .find(|a| is(a.0, a.1))
        .map(|a| a.2.map_or(Kind::Switch, Kind::Multi));
    accepted.or_else(|| {
        compat::REFUSED.iter().find(|r| is(r.0, r.1)).map(|r| {
            if r.2 {
                Kind::Multi("VALUE")
            } else {
                Kind::Switch
            }
        })
    })
}

/// The getopts parser. Every flag may be given more than once: single
/// values keep the last one (option files and the command line combine as
/// in pagekite.py), and switches stay on. pagekite.py's accepted and refused
/// options are parsed too, for `mod` to ignore or refuse with a reason.
#[inline(never)]
pub(super) fn options() -> Options {
    let mut o = visible_options();
    for (short, long, hint, _) in compat::ACCEPTED {
        match hint {
            Some(_) => o.optmulti(short, long, "", ""),
            None => o.optflagmulti(short, long, ""),
        };
    }
    for (short, long, value, _) in compat::REFUSED {
        if value {
            o.optmulti(short, long, "", "");
        } else {
            o.optflagmulti(short, long, "");
        }
    }
    o
}

/// The flags `--help` lists: rkite's own and the ignored switches.
fn visible_options() -> Options {
    let mut o = Options::new();
    for f in FLAGS {
        let (hint, has_arg) = match f.kind {
            Kind::Switch => ("", HasArg::No),
            Kind::Value(h) | Kind::Multi(h) => (h, HasArg::Yes),
        };
        o.opt(f.short, f.long, f.help, hint, has_arg, Occur::Multi);
    }
    for flag in IGNORED_SWITCHES {
        o.optflagmulti("", flag, "");
    }
    o
}

pub(super) fn usage() -> String {
    let brief = "Usage:\n  rkite --isfrontend --ports=PORTS --domain=PROTOS:DOMAIN:SECRET [...]\n  rkite --frontend=HOST:PORT --service_on=PROTO:DOMAIN:HOST:PORT:SECRET [...]\n  rkite --optfile=FILE [...]\n\nA PageKite-compatible tunneled reverse proxy. Flags use pagekite.py's names;\n`--flag=value` and `--flag value` both work, and dashes may replace underscores.";
    let text = visible_options().usage(brief);
    // getopts lists the ignored flags with empty descriptions; say it once.
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| {
            let ignored = IGNORED_SWITCHES
                .iter()
                .any(|f| l.trim() == format!("--{f}"));
            let padding = !l.is_empty() && l.trim().is_empty();
            !ignored && !padding
        })
        .collect();
    let mut text = kept.join("\n");
    text.push_str(&format!(
        "\n\nAccepted for pagekite.py compatibility and ignored: {}; pagekite.py's other\n\
         options are accepted or refused with a reason (README: pagekite.py's options).\n\n\
         Signals: SIGTERM/SIGINT stop (running streams get --stop_grace), SIGHUP re-reads the\n\
         command line and option files and applies the changes live, SIGUSR1 makes a backend\n\
         reconnect its tunnels now, SIGUSR2 logs a stats line.\n\
         Exit codes: 0 stopped cleanly, 1 bad command line or option file, 2 runtime failure.\n\
         Logging: RUST_LOG overrides -v/-q (e.g. RUST_LOG=rkite=debug).\n",
        IGNORED_SWITCHES
            .iter()
            .map(|f| format!("--{f}"))
            .collect::<Vec<_>>()
            .join(" ")
    ));
    text
}
