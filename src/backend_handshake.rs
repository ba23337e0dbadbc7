//! A backend's side of the tunnel handshake: connect completion, the
//! `CONNECT name:443` of a TLS frontend reached through its HTTP port, the
//! signed tunnel request that starts the tunnel core, and the frontend's
//! answers (the reply head and in-band NOOP rounds) turned into what the
//! core sends next and whether the tunnel goes on. A child of `backend`
//! (its state is the parent's); bytes move through `relay` and the core.

use super::*;
use crate::logging::escape;
use crate::proto::operators;

/// Connect completion, `CONNECT name:443` and TLS when configured, the
/// request, the reply: until the tunnel is live.
pub(super) fn drive_handshake(
    eng: &mut Cx,
    be: &mut State,
    token: Token,
    t: &mut Tunnel,
) -> Result<(), Why> {
    if matches!(&t.side, Side::Backend(info) if info.probe) {
        return fleet::drive_probe(eng, be, token, t);
    }
    if t.pre == Phase::Dialing {
        match t.dial_finished() {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(why) => return Err(via_proxy::dial_failed(be, &t.side, why)),
        }
        if !via_proxy::start(t) {
            through(eng, be, token, t)?;
        }
    }
    if t.link.is_none() && t.pre == Phase::Proxy {
        if !via_proxy::drive(be, token, t)? {
            return Ok(());
        }
        through(eng, be, token, t)?;
    }
    while t.link.is_none() && t.pre == Phase::ProxyConnect {
        let Some(head) = read_head(t)? else {
            return Ok(());
        };
        let status = head.lines().next().unwrap_or("").to_string();
        if status_line::check_200(status.trim_end()).is_err() {
            let name = be
                .tls
                .as_ref()
                .and_then(|tls| tls.names.first().cloned())
                .unwrap_or_default();
            return Err(ProtocolError::NoTlsEndpoint { name, status }.into());
        }
        let host = slot_host(be, &t.side);
        let Some(tls) = be.tls.as_ref() else {
            return Ok(());
        };
        let mut session = TlsSession::client(&tls.setup, tls.name_for(&host))?;
        // Anything after the 200 is already the frontend's TLS.
        session.feed(t.inb.data())?;
        let n = t.inb.len();
        t.inb.consume(n);
        t.transport.start_tls(session);
        send_request(eng, be, token, t);
    }
    Ok(())
}

/// The way to the frontend is open (connected, through any proxies):
/// TLS straight away, `CONNECT name:443` then TLS, or the request in clear.
fn through(eng: &Cx, be: &mut State, token: Token, t: &mut Tunnel) -> Result<(), Why> {
    let host = slot_host(be, &t.side);
    match be.tls.as_ref() {
        None => send_request(eng, be, token, t),
        Some(tls) if tls.direct => {
            let mut session = TlsSession::client(&tls.setup, tls.name_for(&host))?;
            if !t.inb.is_empty() {
                // The frontend's first TLS bytes came with the proxy's reply.
                session.feed(t.inb.data())?;
                let n = t.inb.len();
                t.inb.consume(n);
            }
            t.transport.start_tls(session);
            send_request(eng, be, token, t);
        }
        Some(tls) => {
            // pagekite.py's way, which pagekite.py frontends understand:
            // ask for the TLS endpoint in clear, then speak TLS.
            let name = tls.name_for(&host);
            let connect = format!("CONNECT {name}:443 HTTP/1.1\r\nHost: {name}\r\n\r\n");
            t.out.extend(connect.as_bytes());
            t.pre = Phase::ProxyConnect;
        }
    }
    Ok(())
}

/// The frontend's reply head (the tunnel core found it): its status, then
/// its answers; the core goes live (and PINGs) unless they end it.
pub(super) fn on_reply(
    eng: &mut Cx,
    be: &mut State,
    token: Token,
    side: &mut Side,
    peer: SocketAddr,
    status: &str,
    headers: &str,
) -> Result<Control, Why> {
    let reply = handshake::parse_reply(frame::header_lines(headers));
    debug!("[t{} {peer}] reply: {status}", tag(token));
    if let Err(bad) = status_line::check_200(status) {
        return Err(ProtocolError::Rejected(bad, status.to_string()).into());
    }
    if let Side::Backend(info) = side {
        info.addkites = reply.has_feature("AddKites");
    }
    if let Some(motd) = &reply.motd {
        // Once per tunnel: in-band rounds repeat it, and are not logged.
        info!(
            "[t{} {peer}] message of the day: {}",
            tag(token),
            escape(&operators::motd_for_log(motd))
        );
    }
    apply_answers(eng, be, token, side, &reply)
}

/// Reads until a complete HTTP head is buffered; returns it (consumed from
/// the input) or None while more is needed.
pub(super) fn read_head(t: &mut Tunnel) -> Result<Option<String>, Why> {
    loop {
        if let Some(end) = frame::find(t.inb.data(), b"\r\n\r\n") {
            let head = t.inb.data().get(..end + 4).unwrap_or_default();
            let text = std::str::from_utf8(head)
                .map_err(|_| ProtocolError::ReplyNotText)?
                .to_string();
            t.inb.consume(end + 4);
            return Ok(Some(text));
        }
        if t.inb.len() > handshake::MAX_HEAD {
            return Err(ProtocolError::ReplyTooLarge.into());
        }
        match relay::read_some(&mut t.transport, &mut t.inb, handshake::MAX_HEAD + 1024) {
            Io::Done(_) => {}
            Io::WouldBlock | Io::Starved => return Ok(None),
            Io::Eof => return Err(Why::PeerClosed),
            Io::Failed(f) => return Err(relay::failure(&t.transport, f)),
        }
    }
}

/// Starts the tunnel core with the tunnel request (kites signed, with
/// Replace if we had a session) as its first bytes.
pub(super) fn send_request(eng: &Cx, be: &mut State, token: Token, t: &mut Tunnel) {
    let Side::Backend(info) = &mut t.side else {
        return;
    };
    let Some(slot) = be.slots.get_mut(info.slot) else {
        return;
    };
    let lines = signed_lines(&be.settings.kites, &slot.srand, &slot.challenges);
    info.signed = !slot.challenges.is_empty();
    slot.challenges.clear();
    let request = handshake::build_request(VERSION, slot.session.as_deref(), &lines);
    let cfg = relay::link_config(eng, link::Role::Backend);
    t.link = Some(Box::new(Link::connect(
        cfg,
        eng.now,
        relay::unix_time(),
        request.as_bytes(),
    )));
    t.pre = Phase::AwaitingReply;
    debug!(
        "[t{} {}] connected{}, sent the tunnel request",
        tag(token),
        t.peer,
        if t.transport.is_tls() { " (TLS)" } else { "" }
    );
}

/// Our kite lines: answers to stored challenges where we have them, first
/// round lines (empty token) otherwise.
pub(super) fn signed_lines(
    kites: &[ServiceKite],
    srand: &str,
    challenges: &HashMap<String, String>,
) -> Vec<KiteLine> {
    kites
        .iter()
        .map(|k| {
            let mut line = KiteLine {
                proto: k.id.name(),
                domain: k.domain.clone(),
                srand: srand.to_string(),
                token: String::new(),
                sign: String::new(),
            };
            line.token = challenges.get(&line.what()).cloned().unwrap_or_default();
            line.sign = handshake::sign(
                &k.secret,
                &line.payload(),
                &handshake::salt8(random::bytes4()),
            );
            line
        })
        .collect()
}

/// Acts on the frontend's answers (from the reply head or a NOOP chunk):
/// what the tunnel core sends back and whether the tunnel goes on.
pub(super) fn apply_answers(
    eng: &mut Cx,
    be: &mut State,
    token: Token,
    side: &mut Side,
    reply: &TunnelReply,
) -> Result<Control, Why> {
    let Side::Backend(info) = side else {
        return Ok(Control::CONTINUE);
    };
    let now = eng.now;
    let Some(slot) = be.slots.get_mut(info.slot) else {
        return Ok(Control::CONTINUE);
    };
    let fe = slot.name();
    let mut challenges = HashMap::new();
    for answer in &reply.answers {
        let name = kite_name(answer.what());
        match answer {
            KiteAnswer::SignThis { what, challenge } => {
                challenges.insert(what.clone(), challenge.clone());
            }
            KiteAnswer::Ok { .. } => {
                if !info.live.contains(&name) {
                    relay::log_kite(&name, &format!("is live on {fe}"));
                    info.live.push(name);
                }
            }
            KiteAnswer::SslOk { .. } => {}
            KiteAnswer::Invalid { why, .. } => {
                let hint = match why.as_str() {
                    "signature" => " (the secret differs from the frontend's)",
                    "unauthorized" => " (the frontend has no secret for this kite)",
                    "port" | "proto" => " (the frontend does not serve it)",
                    _ => "",
                };
                let line = format_args!("kite {name} rejected by {fe}: {why}{hint}");
                logging::noisy(now, Noise::RejectedByFrontend, Level::Error, line);
            }
            KiteAnswer::Duplicate { .. } => {
                let line = format_args!(
                    "kite {name} rejected by {fe}: duplicate (another backend holds it)"
                );
                logging::noisy(now, Noise::RejectedByFrontend, Level::Warn, line);
            }
        }
    }
    if let Some(id) = &reply.session_id {
        slot.session = Some(id.clone());
    }
    if !challenges.is_empty() {
        if info.addkites {
            let lines: Vec<KiteLine> = signed_lines(&be.settings.kites, &slot.srand, &challenges)
                .into_iter()
                .filter(|l| challenges.contains_key(&l.what()))
                .collect();
            let lines = handshake::inband_request_lines(VERSION, &lines);
            debug!(
                "[t{}] answered {} challenge(s) in band",
                tag(token),
                challenges.len()
            );
            return Ok(Control {
                reply: Some((lines, b"\r\n!")),
                next: Next::Live,
            });
        }
        if !info.signed {
            // The frontend can't take answers in band: answer on a new
            // connection right away.
            slot.challenges = challenges;
            slot.retry.reset();
            return Ok(Control {
                reply: None,
                next: Next::Closing,
            });
        }
    }
    if info.live.is_empty() {
        return Err(ProtocolError::NoKiteAccepted(fe.to_string()).into());
    }
    if let Some(note) = slot.retry.up(now) {
        info!("frontend {fe}: {note}");
    }
    if reply
        .answers
        .iter()
        .any(|a| matches!(a, KiteAnswer::Ok { .. }))
    {
        info!(
            "[t{}] tunnel to {fe} is up with {} kite(s)",
            tag(token),
            info.live.len()
        );
        if let Some(limit) = &reply.ips_per_sec {
            info!(
                "[t{}] {fe} limits visitors to {} (clients/seconds, --ratelimit_ips)",
                tag(token),
                escape(limit)
            );
        }
    }
    if slot.pool {
        // The tunnel is up and its kites live; in a dying (in-band)
        // round-trip the caller already returned. Old tunnels may go now.
        fleet::settle(eng, be, Some(token));
    }
    // Read once this tunnel is back in the table (after this drive).
    super::dyndns::changed(eng, be);
    Ok(Control::CONTINUE)
}

/// The kite of a `proto:domain:srand` answer.
pub(super) fn kite_name(what: &str) -> KiteKey {
    KiteKey::of_answer(what).unwrap_or_else(|| kite::key(what, ""))
}

/// NOOP chunks from the frontend: in-band answers, PONGs.
pub(super) fn on_noop(
    eng: &mut Cx,
    be: &mut State,
    token: Token,
    side: &mut Side,
    f: &Frame<'_>,
) -> Result<Control, Why> {
    let reply = handshake::parse_reply(f.headers());
    if reply.answers.is_empty() {
        return Ok(Control::CONTINUE);
    }
    apply_answers(eng, be, token, side, &reply)
}
