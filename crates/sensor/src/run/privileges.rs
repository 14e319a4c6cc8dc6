//! Dropping root once the captures are open (`[run] user`).
//!
//! Opening a live capture needs root or CAP_NET_RAW; nothing after it does. Started as root
//! with `[run] user` set, `run` opens its interfaces and sockets, then takes the user's
//! supplementary groups (`initgroups`), group and user id (real, effective and saved), and
//! checks that root cannot be regained, before any packet is parsed. Any failure stops the
//! sensor: it never goes on with more privileges than asked.

use std::ffi::CString;

use anyhow::{anyhow, Context as _};
use nix::unistd::{
    getegid, geteuid, getgid, getgroups, getuid, initgroups, setgid, setuid, Uid, User,
};

use crate::Failure;

/// Becomes `user` (and its groups). Already running as `user` (a systemd unit with
/// `User=`), it does nothing; as another non-root user, it is a configuration error.
pub fn drop_to(user: &str) -> Result<(), Failure> {
    let u = User::from_name(user)
        .map_err(|e| Failure::Usage(format!("[run] user: cannot look up `{user}`: {e}")))?
        .ok_or_else(|| Failure::Usage(format!("[run] user: there is no user `{user}`")))?;
    let euid = geteuid();
    if euid == u.uid && getuid() == u.uid {
        return Ok(());
    }
    if !euid.is_root() {
        return Err(Failure::Usage(format!(
            "[run] user = \"{user}\": only root can switch users (running as uid {euid}); \
             run as root, or as {user} with CAP_NET_RAW (see docs/operations.md)"
        )));
    }
    let name = CString::new(user)
        .map_err(|_| Failure::Usage(format!("[run] user: `{user}` is not a user name")))?;
    (|| -> anyhow::Result<()> {
        initgroups(&name, u.gid).context("setting the supplementary groups")?;
        setgid(u.gid).context("setting the group id")?;
        setuid(u.uid).context("setting the user id")?;
        // Root must be gone for good: the ids all changed and cannot change back.
        if setuid(Uid::from_raw(0)).is_ok()
            || geteuid() != u.uid
            || getuid() != u.uid
            || getegid() != u.gid
            || getgid() != u.gid
        {
            return Err(anyhow!("root privileges are still there after the switch"));
        }
        Ok(())
    })()
    .with_context(|| format!("cannot drop privileges to user {user}; refusing to go on"))
    .map_err(Failure::Other)?;
    let groups = getgroups().map(|g| g.len()).unwrap_or(0);
    eprintln!(
        "apiscope: running as {user} (uid {}, gid {}, {groups} groups)",
        u.uid, u.gid
    );
    Ok(())
}
