//! How mailsetup exits: the codes scripts, cron and CI rely on (README,
//! "Exit codes").

use std::process::ExitCode;

/// How mailsetup exits; scripts, cron and CI rely on these codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// 0: done; with `plan --detailed-exitcode`, nothing to change.
    Ok,
    /// 1: an error, said on stderr; nothing was written (a failed apply puts
    /// back what it replaced).
    Error,
    /// 2: `plan --detailed-exitcode` found changes to make.
    Changes,
    /// 3: `check` ran and found failures (an error running it is 1).
    CheckFailed,
    /// 4: `check` found no failure but could not verify everything (no DNS
    /// answer, a refused query): not "all good".
    Unverified,
}

impl Exit {
    /// Every code with what it means, for the man page (and the README's table).
    pub const MEANINGS: &[(u8, &str)] = &[
        (
            0,
            "done; with `plan --detailed-exitcode`, nothing to change",
        ),
        (
            1,
            "an error, said on stderr; nothing was written (a failed apply puts back what it replaced)",
        ),
        (2, "`plan --detailed-exitcode`: there are changes to make"),
        (
            3,
            "`check` ran and found failures; `status`: something needs a person; `reports`: a stricter DMARC policy would lose your mail",
        ),
        (
            4,
            "`check` found no failure, but could not check everything (no DNS answer, a refused query); `status`: nothing needs a person, but the keys or state were not readable by this user",
        ),
    ];
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(match e {
            Exit::Ok => 0,
            Exit::Error => 1,
            Exit::Changes => 2,
            Exit::CheckFailed => 3,
            Exit::Unverified => 4,
        })
    }
}
