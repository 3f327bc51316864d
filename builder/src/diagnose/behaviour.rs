//! Behaviour detectors: what a step left behind when its main process exited.
//!
//! The sandbox finds the processes still alive in a step's PID namespace after its main
//! process exited (then kills them); this module reads what they were listening on from
//! procfs (`/proc/<pid>/net/tcp{,6}`, `/proc/<pid>/fd`) and turns it into the diagnostic
//! that names each process and port on the RUN line (`no-process-sandbox-leaked-process`),
//! which is what Datadog had to find with `netstat` (moby/buildkit#2417).

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use super::signatures::Step;
use super::{Cause, Diagnostic};

/// A listening TCP socket from `/proc/<pid>/net/tcp` or `tcp6`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    pub addr: SocketAddr,
    pub inode: u64,
}

fn parse_hex_v4(hex: &str) -> Option<Ipv4Addr> {
    // The kernel prints the address as a native-endian u32.
    let n = u32::from_str_radix(hex, 16).ok()?;
    Some(Ipv4Addr::from(n.to_ne_bytes()))
}

fn parse_hex_v6(hex: &str) -> Option<Ipv6Addr> {
    if hex.len() != 32 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for (i, chunk) in bytes.chunks_mut(4).enumerate() {
        let n = u32::from_str_radix(&hex[i * 8..i * 8 + 8], 16).ok()?;
        chunk.copy_from_slice(&n.to_ne_bytes());
    }
    Some(Ipv6Addr::from(bytes))
}

/// The listening sockets in a `/proc/<pid>/net/tcp` (or `tcp6`) text.
pub fn listeners(text: &str) -> Vec<Listener> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:tm retrnsmt uid timeout inode
            if f.len() < 10 || f[3] != "0A" {
                return None;
            }
            let (host, port) = f[1].split_once(':')?;
            let port = u16::from_str_radix(port, 16).ok()?;
            let ip = if host.len() == 8 {
                IpAddr::V4(parse_hex_v4(host)?)
            } else {
                IpAddr::V6(parse_hex_v6(host)?)
            };
            Some(Listener {
                addr: SocketAddr::new(ip, port),
                inode: f[9].parse().ok()?,
            })
        })
        .collect()
}

/// Inodes of the sockets a process has open (`/proc/<pid>/fd/* -> socket:[N]`).
pub fn socket_inodes(proc_pid: &Path) -> HashSet<u64> {
    std::fs::read_dir(proc_pid.join("fd"))
        .map(|dir| {
            dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter_map(|t| {
                    t.to_string_lossy()
                        .strip_prefix("socket:[")?
                        .strip_suffix(']')?
                        .parse()
                        .ok()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A process still running after its step's main process exited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    pub pid: u32,
    /// `/proc/<pid>/comm`.
    pub comm: String,
    /// `/proc/<pid>/cmdline`, arguments joined by spaces.
    pub cmdline: String,
    /// TCP ports it was listening on.
    pub listening: Vec<SocketAddr>,
}

/// Reads a leftover process from `/proc/<pid>` (or any procfs-like directory): its name,
/// command line and the TCP sockets it listens on.
pub fn read_leftover(proc_pid: &Path, pid: u32) -> Option<Leftover> {
    let comm = std::fs::read_to_string(proc_pid.join("comm")).ok()?;
    let cmdline = std::fs::read(proc_pid.join("cmdline"))
        .map(|b| {
            b.split(|c| *c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    let own = socket_inodes(proc_pid);
    let mut listening: Vec<SocketAddr> = ["net/tcp", "net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(proc_pid.join(f)).ok())
        .flat_map(|t| listeners(&t))
        .filter(|l| own.contains(&l.inode))
        .map(|l| l.addr)
        .collect();
    listening.sort_unstable();
    listening.dedup();
    Some(Leftover {
        pid,
        comm: comm.trim().to_owned(),
        cmdline,
        listening,
    })
}

/// The warning for processes a step left running (they have been killed), on the RUN
/// line; `None` when there were none.
pub fn leftovers_diagnostic(step: &Step<'_>, leftovers: &[Leftover]) -> Option<Diagnostic> {
    let first = leftovers.first()?;
    let what = step
        .name
        .map_or_else(|| "the step".to_owned(), |n| format!("`{n}`"));
    let mut msg = format!(
        "process `{}` (pid {}{}) was still running after {what} ended",
        first.comm,
        first.pid,
        ports(&first.listening)
    );
    if leftovers.len() > 1 {
        let _ = write!(msg, ", and {} more", leftovers.len() - 1);
    }
    msg.push_str("; rbuild killed it");
    if leftovers.len() > 1 {
        msg.push_str(" and the others");
    }
    let mut d = Cause::NoProcessSandboxLeakedProcess.warning(msg);
    for l in leftovers {
        d = d.with_evidence(format!(
            "pid {} `{}`{}",
            l.pid,
            if l.cmdline.is_empty() {
                &l.comm
            } else {
                &l.cmdline
            },
            ports(&l.listening)
        ));
    }
    if let Some(p) = step.platform {
        d = d.with_platform(p);
    }
    if let Some(n) = step.name {
        d = d.with_step(n);
    }
    if let (Some(file), Some(line)) = (step.file, step.line) {
        d = d.at(file, line, step.end_line.unwrap_or(line));
    }
    Some(d)
}

fn ports(addrs: &[SocketAddr]) -> String {
    if addrs.is_empty() {
        return String::new();
    }
    let list: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    format!(", listening on {}", list.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::signatures::StepOutcome;

    #[test]
    fn listening_sockets_parse_from_proc_net_text() {
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1001        0 4242 1 0000000000000000 100 0 0 10 0\n   1: 0100007F:A1B2 0100007F:1538 01 00000000:00000000 00:00000000 00000000  1001        0 4343 1 0000000000000000 20 4 30 10 -1\n";
        let l = listeners(v4);
        assert_eq!(l.len(), 1, "only LISTEN (0A) sockets");
        if cfg!(target_endian = "little") {
            assert_eq!(l[0].addr, "127.0.0.1:5432".parse().unwrap());
        }
        assert_eq!(l[0].inode, 4242);
        let v6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 100 0 0 10 0\n";
        assert_eq!(listeners(v6)[0].addr, "[::]:80".parse().unwrap());
    }

    #[test]
    fn a_real_listener_of_this_process_is_found_through_procfs() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let me = Path::new("/proc/self");
        let found = read_leftover(me, std::process::id()).unwrap();
        assert!(
            found
                .listening
                .contains(&SocketAddr::from(([127, 0, 0, 1], port))),
            "{found:?}"
        );
        assert!(!found.comm.is_empty());
    }

    #[test]
    fn the_diagnostic_names_processes_and_ports_on_the_run_line() {
        let step = Step {
            name: Some("[2/3] RUN nc -l 5432 & echo started"),
            file: Some("Dockerfile"),
            line: Some(7),
            ..Step::new(StepOutcome::Suspicious)
        };
        assert_eq!(leftovers_diagnostic(&step, &[]), None);
        let leftovers = [
            Leftover {
                pid: 12,
                comm: "nc".to_owned(),
                cmdline: "nc -l 5432".to_owned(),
                listening: vec!["0.0.0.0:5432".parse().unwrap()],
            },
            Leftover {
                pid: 13,
                comm: "sleep".to_owned(),
                cmdline: "sleep 1000".to_owned(),
                listening: vec![],
            },
        ];
        let d = leftovers_diagnostic(&step, &leftovers).unwrap();
        assert_eq!(d.id, "no-process-sandbox-leaked-process");
        assert_eq!(
            d.message,
            "process `nc` (pid 12, listening on 0.0.0.0:5432) was still running after `[2/3] RUN nc -l 5432 & echo started` ended, and 1 more; rbuild killed it and the others"
        );
        assert_eq!(
            d.evidence,
            [
                "pid 12 `nc -l 5432`, listening on 0.0.0.0:5432",
                "pid 13 `sleep 1000`"
            ]
        );
        assert_eq!((d.file.as_deref(), d.line), (Some("Dockerfile"), Some(7)));
    }
}
