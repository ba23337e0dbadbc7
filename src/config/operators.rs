//! The flags of a frontend run for other people, as pagekite.py 1.5.2
//! names them (`motd`, `ratelimit_ips`, `portalias`, `accept_acl_file`,
//! `overload`, `overload_file`, `overload_cpu`, `overload_mem`): read from
//! the parsed command line and checked here, so a bad value is a usage
//! error at start (or a failed reload), never a surprise at run time. The
//! files they name are read by the frontend (`frontend_ops.rs`); what the
//! values mean is `proto::operators`'.

use super::{ConfigError, bad, bad_fmt, last};
use crate::proto::operators::{self, OverloadSettings, PortAliases, RateLimits};

/// What the operator flags say, checked.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OperatorSettings {
    /// `--motd`: the file whose text backends get.
    pub motd: Option<String>,
    pub ratelimit_ips: RateLimits,
    pub portalias: PortAliases,
    pub accept_acl_file: Option<String>,
    pub overload: OverloadSettings,
}

// Parsing refuses NaN fractions, so equality is an equivalence.
impl Eq for OperatorSettings {}

#[inline(never)]
pub(super) fn parse(m: &getopts::Matches) -> Result<OperatorSettings, ConfigError> {
    let ratelimit_ips = RateLimits::parse(&m.opt_strs("ratelimit_ips"))
        .map_err(|e| bad("ratelimit_ips", e.to_string()))?;
    let portalias = PortAliases::parse(&m.opt_strs("portalias"))
        .map_err(|e| bad("portalias", e.to_string()))?;
    let defaults = OverloadSettings::default();
    let fraction = |flag: &str, default: f64, max: f64| match last(m, flag) {
        Some(v) => operators::parse_fraction(&v, max).map_err(|e| bad(flag, e.to_string())),
        None => Ok(default),
    };
    let baseline = match last(m, "overload") {
        Some(v) => v
            .trim()
            .parse::<u64>()
            .map_err(|_| bad_fmt("overload", format_args!("{v:?} is not a whole number")))?,
        None => 0,
    };
    let overload = OverloadSettings {
        baseline,
        cpu: fraction("overload_cpu", defaults.cpu, f64::MAX)?,
        mem: fraction("overload_mem", defaults.mem, 1.5)?,
        file: last(m, "overload_file"),
    };
    Ok(OperatorSettings {
        motd: last(m, "motd"),
        ratelimit_ips,
        portalias,
        accept_acl_file: last(m, "accept_acl_file"),
        overload,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::{Parsed, parse};
    use crate::proto::operators::RateLimit;

    fn args(extra: &[&str]) -> Vec<String> {
        ["--isfrontend", "--ports=9080"]
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect()
    }

    #[test]
    fn operator_flags_are_read_and_checked() {
        let Ok(Parsed::Run(c)) = parse(&args(&[
            "--motd=/etc/motd",
            "--ratelimit_ips=5/60",
            "--ratelimit_ips=a.test:1/5",
            "--portalias=8080:80",
            "--accept_acl_file=/etc/acl",
            "--overload=100",
            "--overload_file=/run/ov",
            "--overload_cpu=0",
            "--overload_mem=3",
        ])) else {
            panic!("a frontend configuration");
        };
        let ops = &c.frontend().expect("frontend").ops;
        assert_eq!(ops.motd.as_deref(), Some("/etc/motd"));
        assert_eq!(
            ops.ratelimit_ips.for_domain("x.a.test"),
            Some(RateLimit { ips: 1, secs: 5 })
        );
        assert_eq!(ops.portalias.map(8080), 80);
        assert_eq!(ops.accept_acl_file.as_deref(), Some("/etc/acl"));
        assert_eq!(
            (ops.overload.baseline, ops.overload.cpu, ops.overload.mem),
            (100, 0.0, 1.5)
        );
        assert_eq!(ops.overload.file.as_deref(), Some("/run/ov"));
        for (bad, flag) in [
            ("--ratelimit_ips=5", "ratelimit_ips"),
            ("--portalias=80", "portalias"),
            ("--overload=-1", "overload"),
            ("--overload_cpu=lots", "overload_cpu"),
        ] {
            let err = parse(&args(&[bad])).expect_err(bad);
            assert_eq!(err.flag, flag, "{bad}: {err}");
        }
    }
}
