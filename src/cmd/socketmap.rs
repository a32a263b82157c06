//! `socketmap`: Postfix's lookups on standard input and output.

use std::net::IpAddr;

use anyhow::Result;

use crate::exit::Exit;
use crate::resolve::{self, RecordType, Resolver, SecureAnswer};
use crate::socketmap::{MxGroup, SecureDns, serve};
use crate::ui::Ui;

/// The first resolver of /etc/resolv.conf, when all are on this host: the
/// only one whose DNSSEC verdict counts.
struct Local(std::result::Result<IpAddr, String>);

impl SecureDns for Local {
    fn query(&self, name: &str, rtype: RecordType) -> Result<SecureAnswer, String> {
        resolve::secure_query(self.0.clone()?, name, rtype)
    }
}

pub fn run(mx: &[String], ui: &mut Ui) -> Result<Exit> {
    let groups = mx
        .iter()
        .map(|g| {
            g.parse::<MxGroup>()
                .map_err(|e| anyhow::anyhow!("--mx {e}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let secure = Local(resolve::local_servers().map(|servers| servers[0]));
    // MX names for the groups: any resolver will do.
    let dns = Resolver::new(None)?;
    serve(std::io::stdin().lock(), (&secure, &dns), &groups, |reply| {
        ui.out(reply)
    })?;
    Ok(Exit::Ok)
}
