//! DMARC records (RFC 7489 6.3): strict parsing of what receivers act on.

/// The report addresses of a valid record; the rest only needs to be valid.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dmarc {
    pub policy: String,
    /// Domains of the `mailto:` addresses in rua= and ruf=, in order, without repeats.
    pub report_domains: Vec<String>,
    /// Tags that are legal but ignored by receivers (unknown tags).
    pub ignored: Vec<String>,
}

/// Whether a TXT string is meant as a DMARC record.
pub fn is_dmarc(txt: &str) -> bool {
    txt.trim_start()
        .get(..8)
        .is_some_and(|head| head.eq_ignore_ascii_case("v=dmarc1"))
}

pub fn parse(text: &str) -> Result<Dmarc, String> {
    let mut tags: Vec<(String, &str)> = Vec::new();
    for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = part
            .split_once('=')
            .ok_or_else(|| format!("`{part}` is not a tag=value pair"))?;
        let name = name.trim().to_ascii_lowercase();
        if tags.iter().any(|(n, _)| *n == name) {
            return Err(format!("the {name}= tag appears twice"));
        }
        tags.push((name, value.trim()));
    }
    match tags.first() {
        Some((name, "DMARC1")) if name == "v" => {}
        _ => return Err("the record must start with v=DMARC1".into()),
    }
    let mut dmarc = Dmarc::default();
    let policy = |tag: &str, v: &str| match v {
        "none" | "quarantine" | "reject" => Ok(v.to_string()),
        _ => Err(format!(
            "{tag}={v} is not a policy (none, quarantine or reject)"
        )),
    };
    for (name, value) in &tags[1..] {
        match name.as_str() {
            "p" => dmarc.policy = policy("p", value)?,
            // DMARCbis' policy for names that do not exist is checked as one.
            "sp" | "np" => {
                policy(name, value)?;
            }
            // DMARCbis: testing mode and public-suffix flags.
            "t" if matches!(*value, "y" | "n") => {}
            "t" => return Err(format!("t={value}: use y or n (DMARCbis)")),
            "psd" if matches!(*value, "y" | "n" | "u") => {}
            "psd" => return Err(format!("psd={value}: use y, n or u (DMARCbis)")),
            "adkim" | "aspf" if matches!(*value, "r" | "s") => {}
            "adkim" | "aspf" => return Err(format!("{name}={value}: use r or s")),
            "pct" if value.parse::<u8>().is_ok_and(|p| p <= 100) => {}
            "pct" => return Err(format!("pct={value} is not a percentage (0 to 100)")),
            "ri" if value.parse::<u32>().is_ok() => {}
            "ri" => return Err(format!("ri={value} is not a number of seconds")),
            "fo" if value
                .split(':')
                .all(|o| matches!(o.trim(), "0" | "1" | "d" | "s")) => {}
            "fo" => return Err(format!("fo={value}: use 0, 1, d or s, separated by `:`")),
            "rf" => {}
            "rua" | "ruf" => {
                for uri in value.split(',').map(str::trim) {
                    let domain = report_domain(uri)
                        .ok_or_else(|| format!("{name}: `{uri}` is not a mailto: address"))?;
                    if !dmarc.report_domains.contains(&domain) {
                        dmarc.report_domains.push(domain);
                    }
                }
            }
            _ => dmarc.ignored.push(name.clone()),
        }
    }
    if dmarc.policy.is_empty() {
        return Err("there is no p= tag: receivers ignore the record".into());
    }
    Ok(dmarc)
}

/// `mailto:x@example.com!10m` → `example.com`.
fn report_domain(uri: &str) -> Option<String> {
    let address = uri
        .get(..7)?
        .eq_ignore_ascii_case("mailto:")
        .then(|| &uri[7..])?;
    let address = address.split('!').next()?;
    let (local, domain) = address.rsplit_once('@')?;
    (!local.is_empty() && domain.contains('.') && !domain.contains(char::is_whitespace))
        .then(|| domain.trim_end_matches('.').to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_records_give_their_report_domains() {
        let d = parse("v=DMARC1; p=reject; sp=none; adkim=s; pct=50; rua=mailto:a@Example.com,mailto:b@reports.example.net!10m; ruf=mailto:c@example.com; fo=1:d").unwrap();
        assert_eq!(d.policy, "reject");
        assert_eq!(d.report_domains, ["example.com", "reports.example.net"]);
        assert!(d.ignored.is_empty());
        let d = parse("v=DMARC1;p=none;future=1;").unwrap();
        assert_eq!(d.ignored, ["future"]);
    }

    #[test]
    fn syntax_errors_are_named() {
        for (bad, why) in [
            ("p=reject; v=DMARC1", "start with v=DMARC1"),
            ("v=DMARC1; p=rejected", "not a policy"),
            ("v=DMARC1", "no p= tag"),
            ("v=DMARC1; p=none; pct=150", "not a percentage"),
            ("v=DMARC1; p=none; adkim=strict", "use r or s"),
            ("v=DMARC1; p=none; rua=reports@example.com", "not a mailto:"),
            ("v=DMARC1; p=none; p=reject", "twice"),
            ("v=DMARC1; p none", "tag=value"),
            ("v=DMARC1; p=none; np=deny", "not a policy"),
            ("v=DMARC1; p=none; t=maybe", "use y or n"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn dmarc_records_are_recognized_by_their_version() {
        assert!(is_dmarc("v=DMARC1; p=none"));
        assert!(is_dmarc("v=dmarc1;p=none"));
        assert!(!is_dmarc("v=spf1 -all"));
    }
}
