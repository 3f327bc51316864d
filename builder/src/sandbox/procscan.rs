//! Finding what is still running in a sandbox: processes and the sockets they listen on,
//! read from a `proc` mount (the sandbox's own, or the host's filtered by PID namespace).

use std::collections::HashMap;
use std::fs;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use super::result::{Leftover, Listener};

/// Every live (non-zombie) process under `proc_root` for which `keep(pid)` holds (`pid`
/// as that `proc` numbers it), with its listening sockets, read from the network tables of
/// the first one found. Reported PIDs are those of the innermost PID namespace.
pub fn scan(proc_root: &Path, keep: impl Fn(i32) -> bool) -> Vec<Leftover> {
    let Ok(dir) = fs::read_dir(proc_root) else {
        return Vec::new();
    };
    let mut pids: Vec<i32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|pid| keep(*pid))
        .collect();
    pids.sort_unstable();
    let mut out: Vec<Leftover> = Vec::new();
    let mut sockets: HashMap<u64, i32> = HashMap::new();
    // PIDs as the sandbox sees them (the last `NSpid` entry), reported at the end.
    let mut inner: Vec<i32> = Vec::new();
    for pid in pids {
        let base = proc_root.join(pid.to_string());
        let Ok(stat) = fs::read_to_string(base.join("stat")) else {
            continue; // gone meanwhile
        };
        if state(&stat) == Some('Z') {
            continue;
        }
        let command = fs::read_to_string(base.join("comm"))
            .map(|s| s.trim_end().to_owned())
            .unwrap_or_default();
        let cmdline = fs::read(base.join("cmdline"))
            .map(|b| {
                String::from_utf8_lossy(&b)
                    .split('\0')
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        if let Ok(fds) = fs::read_dir(base.join("fd")) {
            for fd in fds.flatten() {
                if let Some(inode) = fs::read_link(fd.path())
                    .ok()
                    .and_then(|t| socket_inode(&t.to_string_lossy()))
                {
                    sockets.entry(inode).or_insert(pid);
                }
            }
        }
        out.push(Leftover {
            pid,
            command,
            cmdline,
            listening: Vec::new(),
        });
        inner.push(ns_pid(&base).unwrap_or(pid));
    }
    if let Some(first) = out.first().map(|l| l.pid) {
        let net = proc_root.join(first.to_string()).join("net");
        for proto in ["tcp", "tcp6", "udp", "udp6"] {
            let text = fs::read_to_string(net.join(proto)).unwrap_or_default();
            for (inode, listener) in parse_net(&text, proto) {
                if let Some(pid) = sockets.get(&inode)
                    && let Some(l) = out.iter_mut().find(|l| l.pid == *pid)
                    && !l.listening.contains(&listener)
                {
                    l.listening.push(listener);
                }
            }
        }
        for l in &mut out {
            l.listening.sort();
        }
    }
    for (l, p) in out.iter_mut().zip(inner) {
        l.pid = p;
    }
    out
}

/// The innermost PID of a process (last field of `NSpid:` in its `status`).
fn ns_pid(base: &Path) -> Option<i32> {
    let status = fs::read_to_string(base.join("status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))?
        .split_whitespace()
        .last()?
        .parse()
        .ok()
}

/// The state letter of a `/proc/PID/stat` line (after the parenthesised command).
fn state(stat: &str) -> Option<char> {
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// `socket:[12345]` -> 12345.
fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Listening TCP sockets and bound UDP sockets in a `/proc/net/{tcp,tcp6,udp,udp6}` table.
pub fn parse_net(text: &str, proto: &str) -> Vec<(u64, Listener)> {
    let listening_state = if proto.starts_with("tcp") { "0A" } else { "07" };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || f[3] != listening_state {
                return None;
            }
            let (addr, port) = f[1].split_once(':')?;
            let port = u16::from_str_radix(port, 16).ok()?;
            let address = match addr.len() {
                8 => Ipv4Addr::from(u32::from_str_radix(addr, 16).ok()?.to_le_bytes()).to_string(),
                32 => {
                    let mut bytes = [0u8; 16];
                    for i in 0..4 {
                        let word = u32::from_str_radix(&addr[i * 8..i * 8 + 8], 16).ok()?;
                        bytes[i * 4..i * 4 + 4].copy_from_slice(&word.to_le_bytes());
                    }
                    Ipv6Addr::from(bytes).to_string()
                }
                _ => return None,
            };
            let inode: u64 = f[9].parse().ok()?;
            Some((
                inode,
                Listener {
                    protocol: proto.to_owned(),
                    address,
                    port,
                },
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_tables_yield_listeners_with_addresses() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1001        0 4242 1 0000000000000000 100 0 0 10 0\n\
   1: 00000000:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1001        0 4243 1 0000000000000000 100 0 0 10 0\n\
   2: 0100007F:9C40 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1001        0 4244 1 0000000000000000 100 0 0 10 0\n";
        let got = parse_net(tcp, "tcp");
        assert_eq!(
            got,
            [
                (
                    4242,
                    Listener {
                        protocol: "tcp".into(),
                        address: "127.0.0.1".into(),
                        port: 8080
                    }
                ),
                (
                    4243,
                    Listener {
                        protocol: "tcp".into(),
                        address: "0.0.0.0".into(),
                        port: 5432
                    }
                ),
            ]
        );
        let tcp6 = "header\n   0: 00000000000000000000000001000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 99 1 0000000000000000 100 0 0 10 0\n";
        let got = parse_net(tcp6, "tcp6");
        assert_eq!(got[0].1.address, "::1");
        assert_eq!(got[0].1.port, 22);
    }

    #[test]
    fn stat_state_survives_odd_command_names() {
        assert_eq!(state("42 (a) b) S 1 42"), Some('S'));
        assert_eq!(state("43 (zz) Z 1"), Some('Z'));
        assert_eq!(socket_inode("socket:[77]"), Some(77));
        assert_eq!(socket_inode("pipe:[77]"), None);
    }

    #[test]
    fn scanning_this_process_finds_it() {
        let me = i32::try_from(std::process::id()).unwrap();
        let found = scan(Path::new("/proc"), |pid| pid == me);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].pid, me);
        assert!(!found[0].command.is_empty());
    }
}
