//! `--proxy`, `--socksify`, `--torify` and `--noproxy` as one ordered list:
//! pagekite.py applies them in the order given (hops chain, `--noproxy`
//! starts over), across option files and the command line, so they are
//! read by position here rather than flag by flag. Parsing of each value is
//! `proto::proxy`'s; this only orders them and names the flag in errors.

use super::{ConfigError, bad};
use crate::proto::proxy::{self, ProxySpec};

/// The flags that build the chain, in pagekite.py's spelling.
pub(super) const PROXY_FLAGS: &[&str] = &["proxy", "socksify", "torify", "noproxy"];

/// Every proxy flag given, with its value, in the order given.
pub(super) fn in_order(m: &getopts::Matches) -> Vec<(usize, &'static str, String)> {
    let mut events = Vec::new();
    for &flag in PROXY_FLAGS {
        if flag == "noproxy" {
            for pos in m.opt_positions(flag) {
                events.push((pos, flag, String::new()));
            }
        } else {
            for (pos, value) in m.opt_strs_pos(flag) {
                events.push((pos, flag, value));
            }
        }
    }
    events.sort_by_key(|e| e.0);
    events
}

/// The proxy chain the options describe (empty: connect directly).
pub(super) fn chain(m: &getopts::Matches) -> Result<Vec<ProxySpec>, ConfigError> {
    let mut chain = Vec::new();
    for (_, flag, value) in in_order(m) {
        let setting = proxy::parse_flag(flag, &value).map_err(|e| bad(flag, e.to_string()))?;
        proxy::apply(&mut chain, setting);
    }
    Ok(chain)
}

#[cfg(test)]
mod tests {
    use super::super::{Parsed, parse};
    use crate::proto::proxy::ProxyKind;

    fn chain_of(list: &[&str]) -> Vec<crate::proto::proxy::ProxySpec> {
        let mut args: Vec<String> = vec![
            "--frontend=127.0.0.1:9".into(),
            "--service_on=http:a.example:127.0.0.1:80:s".into(),
        ];
        args.extend(list.iter().map(|s| s.to_string()));
        match parse(&args) {
            Ok(Parsed::Run(c)) => c.backend().map(|b| b.proxies.clone()).unwrap_or_default(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn hops_chain_in_order_and_noproxy_starts_over() {
        let c = chain_of(&[
            "--socksify=127.0.0.1:1080",
            "--noproxy",
            "--proxy=http://u:p@127.0.0.1:3128/",
            "--torify=localhost:9050",
        ]);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].kind, ProxyKind::HttpConnect);
        assert_eq!(c[0].port, 3128);
        assert!(c[0].auth.is_some());
        assert!(c[1].torify);
        assert!(chain_of(&["--proxy=socks://h:1/", "--noproxy"]).is_empty());
    }

    #[test]
    fn settings_write_the_chain_back_in_order() {
        let args: Vec<String> = [
            "--frontend=127.0.0.1:9",
            "--service_on=http:a.example:127.0.0.1:80:s",
            "--socksify=127.0.0.1:1080",
            "--noproxy",
            "--proxy=http://u:p@127.0.0.1:3128/",
            "--settings",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let Ok(Parsed::Settings(text)) = parse(&args) else {
            panic!("--settings");
        };
        assert!(
            text.contains(
                "##[ Proxy-chain settings ]##\nsocksify = 127.0.0.1:1080\nnoproxy\n\
                 proxy = http://u:p@127.0.0.1:3128/\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_bad_proxy_names_its_flag() {
        let args: Vec<String> = [
            "--frontend=127.0.0.1:9",
            "--service_on=http:a.example:127.0.0.1:80:s",
            "--proxy=socks4://h:1/",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let e = parse(&args).unwrap_err();
        assert_eq!(e.flag, "proxy");
        assert!(e.problem.contains("SOCKS4"), "{e}");
    }
}
