//! `tls-policy`: Postfix's socketmap on standard input and output.

use std::net::IpAddr;

use anyhow::Result;

use crate::exit::Exit;
use crate::resolve::{self, RecordType, SecureAnswer};
use crate::tls_policy::{SecureDns, serve};
use crate::ui::Ui;

/// The first resolver of /etc/resolv.conf, when all are on this host.
struct Local(std::result::Result<IpAddr, String>);

impl SecureDns for Local {
    fn query(&self, name: &str, rtype: RecordType) -> Result<SecureAnswer, String> {
        resolve::secure_query(self.0.clone()?, name, rtype)
    }
}

pub fn run(ui: &mut Ui) -> Result<Exit> {
    let dns = Local(resolve::local_servers().map(|servers| servers[0]));
    serve(std::io::stdin().lock(), &dns, |reply| ui.out(reply))?;
    Ok(Exit::Ok)
}
