//! Judging the kites of a tunnel request or an in-band round (protocol doc
//! §2.4-2.5): the verdicts of `proto::auth`, the answers of
//! `--authdomain` look-ups (`frontend_authdns.rs`), `--authfile` users'
//! caps, the duplicate check against live tunnels, and the registering of
//! accepted kites. Writes no bytes itself: the replies are built by the
//! callers in `frontend.rs` (and by `on_wake` for a round that waited).

use super::*;

/// Judges every kite of a request, including the duplicate check against
/// other live tunnels. `None`: the request is held until the auth
/// domain's answers arrive (`on_wake`), then judged again.
pub(super) fn judge(
    eng: &mut Cx,
    fe: &mut State,
    token: Token,
    request: &TunnelRequest,
    peer: SocketAddr,
    in_band: bool,
) -> Option<Vec<KiteAnswer>> {
    let now = unix_now();
    // First the look-ups the kites need and nobody has answered yet; the
    // challenge salt is irrelevant here (only `Lookup` verdicts count).
    let missing: Vec<(String, String)> = if fe.settings.auth_domains.is_empty() {
        // No auth domain, nothing to ask: spare the signature checks.
        Vec::new()
    } else {
        let (policy, remote) = (fe.policy(), fe.remote());
        request
            .kites
            .iter()
            .filter_map(
                |line| match auth::judge_with(&policy, remote, line, now, "t0000000") {
                    Judged::Lookup { name, auth_domain } => Some((name, auth_domain)),
                    _ => None,
                },
            )
            .filter(|(name, _)| fe.auth.missing(token, name, eng.now))
            .collect()
    };
    if !missing.is_empty() && !fe.auth.hold(token, request.clone(), peer, in_band, missing) {
        return None;
    }
    let mut answers = Vec::new();
    let mut suspects = Vec::new();
    let fail_closed = fe.settings.authfail_closed;
    let policy = Policy {
        secrets: &fe.settings.domain_secrets,
        protos: &fe.settings.protos,
        ports: &fe.info.ports,
        raw_ports: &fe.raw_ports,
        raw_virtual: fe.raw_virtual,
        fe_secret: &fe.challenge_key,
    };
    let remote = Remote {
        auth_domains: &fe.settings.auth_domains,
        users: &fe.settings.auth_users,
    };
    for line in &request.kites {
        let what = line.what();
        let name = kite::key(&line.proto, &line.domain);
        // The auth domain that proved this kite, if it was one, or the
        // `--authfile` user.
        let mut via_dns = None;
        let mut via_user = None;
        if !remote.auth_domains.is_empty() {
            // The status file's look-up counters may move.
            eng.status_changed();
        }
        let verdict = match auth::judge_with(
            &policy,
            remote,
            line,
            now,
            &handshake::tok8(random::bytes4()),
        ) {
            Judged::Lookup {
                name: lookup,
                auth_domain,
            } => match fe.auth.known(token, &lookup, eng.now) {
                Some(authdns::Resolved::Answer(Outcome::Ok { .. })) => {
                    via_dns = Some(auth_domain);
                    Verdict::Accept
                }
                Some(authdns::Resolved::Answer(Outcome::Refused(r))) => Verdict::Reject(match r {
                    crate::proto::authdns::Refusal::Quota => Reason::Quota,
                    crate::proto::authdns::Refusal::Unauthorized => Reason::Unauthorized,
                }),
                Some(authdns::Resolved::Failed) if !fail_closed => {
                    warn!(
                        "[t{} {peer}] kite {} accepted without its --authdomain answer (no --authfail_closed)",
                        tag(token),
                        escape(&name.to_string())
                    );
                    via_dns = Some(auth_domain);
                    Verdict::Accept
                }
                Some(authdns::Resolved::Failed | authdns::Resolved::Busy) | None => {
                    Verdict::Reject(Reason::Unauthorized)
                }
            },
            Judged::User(i) => match fe.settings.auth_users.get(i) {
                Some(user) if over_cap(&fe.kites, &fe.user_kites, user, token) => {
                    Verdict::Reject(Reason::Quota)
                }
                Some(user) => {
                    via_user = Some(user.name.clone());
                    Verdict::Accept
                }
                None => Verdict::Reject(Reason::Unauthorized),
            },
            Judged::Done(v) => v,
        };
        match verdict {
            Verdict::SignThis(challenge) => answers.push(KiteAnswer::SignThis { what, challenge }),
            Verdict::Reject(reason) => {
                logging::noisy(
                    eng.now,
                    Noise::KiteRejected,
                    Level::Warn,
                    format_args!(
                        "[t{} {peer}] kite {} rejected: {reason}",
                        tag(token),
                        escape(&name.to_string())
                    ),
                );
                answers.push(KiteAnswer::Invalid {
                    what,
                    why: reason.as_str().to_string(),
                });
            }
            Verdict::Accept => {
                let holder = std::iter::once(name.clone())
                    .chain(kite::wildcards(&line.domain, false).map(|w| kite::key(&line.proto, &w)))
                    .find_map(|k| fe.kites.get(&k).copied())
                    .filter(|holder| *holder != token);
                match holder {
                    Some(other) if eng.conns.contains(other) => {
                        logging::noisy(
                            eng.now,
                            Noise::KiteDuplicate,
                            Level::Warn,
                            format_args!(
                                "[t{} {peer}] kite {} rejected: duplicate (held by t{})",
                                tag(token),
                                escape(&name.to_string()),
                                tag(other)
                            ),
                        );
                        suspects.push(other);
                        answers.push(KiteAnswer::Duplicate { what });
                    }
                    _ => {
                        // The relay can also take HTTPS for this name itself.
                        let http_like = kite::KiteId::parse(&line.proto)
                            .is_some_and(|id| kite::fallbacks("websocket").any(|p| p == id.base));
                        let ssl = http_like && fe.endpoints.find(&line.domain).is_some();
                        answers.push(KiteAnswer::Ok { what: what.clone() });
                        match via_user {
                            Some(user) => fe.user_kites.insert(name.clone(), user),
                            None => fe.user_kites.remove(&name),
                        };
                        match via_dns {
                            Some(adom) => fe.dns_kites.insert(name, adom),
                            None => fe.dns_kites.remove(&name),
                        };
                        if ssl {
                            answers.push(KiteAnswer::SslOk { what });
                        }
                    }
                }
            }
        }
    }
    fe.auth.release(token);
    // The holder of a duplicate may be a dead tunnel the backend is trying to
    // replace: ping it now so it is found out within one grace period.
    for other in suspects {
        if let Some(Conn::Tunnel(t)) = eng.conns.get_mut(other) {
            if let Some(link) = t.link.as_deref_mut() {
                link.suspect(eng.now);
            }
            let at = eng.now;
            eng.arm(other, TimerKind::Keepalive, at);
        }
    }
    Some(answers)
}

/// Whether one more tunnel (`token`) for `user`'s kites would pass the
/// user's `--authfile` cap. A tunnel that already carries one of them adds
/// nothing.
fn over_cap(
    kites: &HashMap<KiteKey, Token>,
    user_kites: &HashMap<KiteKey, String>,
    user: &crate::proto::authfile::AuthUser,
    token: Token,
) -> bool {
    if user.max_tunnels == 0 {
        return false;
    }
    let mut tunnels: Vec<Token> = user_kites
        .iter()
        .filter(|(_, u)| **u == user.name)
        .filter_map(|(k, _)| kites.get(k).copied())
        .collect();
    tunnels.sort_unstable();
    tunnels.dedup();
    !tunnels.contains(&token) && tunnels.len() >= user.max_tunnels
}

/// Adds the accepted kites of `answers` to the routing table.
pub(super) fn register(
    eng: &mut Cx,
    fe: &mut State,
    token: Token,
    answers: &[KiteAnswer],
) -> Vec<KiteKey> {
    let mut names = Vec::new();
    for answer in answers {
        if let KiteAnswer::Ok { what } = answer {
            let Some(name) = KiteKey::of_answer(what) else {
                continue;
            };
            fe.kites.insert(name.clone(), token);
            relay::log_kite(&name, "is live");
            super::acme::kite_live(eng, fe, &name.proto, &name.domain);
            names.push(name);
        }
    }
    names
}

/// The reply to an in-band kite round, with its kites registered.
pub(super) fn inband_answer(
    eng: &mut Cx,
    fe: &mut State,
    token: Token,
    info: &mut TunnelInfo,
    answers: &[KiteAnswer],
) -> Control {
    let session = guard::new_session(fe, token, &mut info.sessions);
    let mut lines =
        handshake::inband_reply_lines_with(info.prefix, answers, &session, &fe.ops.motd);
    fe.ops.finish_lines(info.prefix, answers, &mut lines);
    // `new_session` has put it in `info.sessions` already.
    info.kites.extend(register(eng, fe, token, answers));
    fe.ops.tunnel_kites(token, info.kites.iter());
    let signing = answers
        .iter()
        .any(|a| matches!(a, KiteAnswer::SignThis { .. }));
    // As pagekite.py: an in-band answer with nothing accepted ends the tunnel.
    let next = if info.kites.is_empty() && !signing {
        Next::Closing
    } else {
        Next::Live
    };
    Control {
        reply: Some((lines, b"!")),
        next,
    }
}

/// The resolver answered: handshakes and in-band rounds whose look-ups
/// are all answered now go on.
pub fn on_wake(eng: &mut Cx, fe: &mut State) {
    // The status file's look-up counters moved.
    eng.status_changed();
    let (ready, others) = fe.auth.on_wake(eng.now);
    for (id, generation, result) in others {
        super::acme::on_resolved(eng, fe, id, generation, result);
    }
    for token in ready {
        if fe.auth.waiting_in_band(token) != Some(true) {
            // The tunnel's handshake hook picks it up.
            eng.mark_dirty(token);
            continue;
        }
        let Some((request, peer)) = fe.auth.take_ready(token, true) else {
            continue;
        };
        let Some(answers) = judge(eng, fe, token, &request, peer, true) else {
            continue;
        };
        // Out of the table while answered: registering a kite may ask the
        // reactor for a timer (`--acme`).
        let mut t = match eng.conns.take(token) {
            Some(Conn::Tunnel(t)) => t,
            Some(other) => {
                eng.settle(token, Some(other));
                continue;
            }
            None => {
                fe.auth.release(token);
                continue;
            }
        };
        if let Side::Frontend(info) = &mut t.side {
            let had = info.has_kites();
            let control = inband_answer(eng, fe, token, info, &answers);
            let added = !had && info.has_kites();
            if let Some(link) = t.link.as_deref_mut() {
                if let Some((lines, body)) = &control.reply {
                    link.send_noop(lines, body);
                }
                if control.next == Next::Closing {
                    link.close_gracefully();
                }
            }
            if added {
                eng.status_changed();
            }
        }
        eng.settle(token, Some(Conn::Tunnel(t)));
        eng.mark_dirty(token);
    }
}
