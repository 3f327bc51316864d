//! Which platforms run natively: the host's own, plus 32-bit platforms the CPU and kernel
//! may run directly (`386` on amd64, `arm` on arm64). For the latter a tiny static ELF
//! that only calls `exit(0)` is executed; if it runs, the platform is native.
//!
//! The probe binaries are built here byte by byte (an ELF header, one `PT_LOAD` program
//! header and three instructions), so nothing needs to be shipped.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use super::Platform;

/// Whether binaries of `platform` run on this host without an emulator.
pub fn runs_natively(platform: &Platform) -> bool {
    static CACHE: OnceLock<Mutex<HashMap<String, bool>>> = OnceLock::new();
    let host = Platform::host();
    if platform.os != "linux" {
        return false;
    }
    if platform.arch == host.arch {
        return true;
    }
    let Some(elf) = probe_elf(&host.arch, &platform.arch) else {
        return false;
    };
    let cache = CACHE.get_or_init(Mutex::default);
    if let Some(&known) = cache
        .lock()
        .ok()
        .and_then(|c| c.get(&platform.arch).copied())
        .as_ref()
    {
        return known;
    }
    let ok = crate::sandbox::run_probe(&elf);
    if let Ok(mut c) = cache.lock() {
        c.insert(platform.arch.clone(), ok);
    }
    ok
}

/// The probe for `arch` when a `host` CPU might run it natively.
pub(crate) fn probe_elf(host: &str, arch: &str) -> Option<Vec<u8>> {
    match (host, arch) {
        // xor ebx,ebx; mov eax,1 (exit); int 0x80
        ("amd64", "386") => Some(elf32(3, 0, &[0x31, 0xdb, 0xb8, 1, 0, 0, 0, 0xcd, 0x80])),
        // mov r0,#0; mov r7,#1 (exit); svc #0 -- EABI version 5 in e_flags, which 64-bit
        // kernels require of 32-bit ARM binaries.
        ("arm64", "arm") => Some(elf32(
            40,
            0x0500_0000,
            &[
                0x00, 0x00, 0xa0, 0xe3, 0x01, 0x70, 0xa0, 0xe3, 0x00, 0x00, 0x00, 0xef,
            ],
        )),
        _ => None,
    }
}

/// A minimal little-endian 32-bit static executable running `code` at its entry point.
fn elf32(machine: u16, flags: u32, code: &[u8]) -> Vec<u8> {
    const BASE: u32 = 0x0001_0000;
    const EHDR: u16 = 52;
    const PHDR: u16 = 32;
    let total = u32::from(EHDR) + u32::from(PHDR) + u32::try_from(code.len()).unwrap_or(0);
    let mut v = Vec::with_capacity(total as usize);
    v.extend_from_slice(&[0x7f, b'E', b'L', b'F', 1, 1, 1, 0]);
    v.extend_from_slice(&[0; 8]);
    v.extend_from_slice(&2u16.to_le_bytes()); // e_type: EXEC
    v.extend_from_slice(&machine.to_le_bytes());
    v.extend_from_slice(&1u32.to_le_bytes()); // e_version
    v.extend_from_slice(&(BASE + u32::from(EHDR) + u32::from(PHDR)).to_le_bytes()); // e_entry
    v.extend_from_slice(&u32::from(EHDR).to_le_bytes()); // e_phoff
    v.extend_from_slice(&0u32.to_le_bytes()); // e_shoff
    v.extend_from_slice(&flags.to_le_bytes());
    v.extend_from_slice(&EHDR.to_le_bytes());
    v.extend_from_slice(&PHDR.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes()); // e_phnum
    v.extend_from_slice(&[0; 6]); // e_shentsize, e_shnum, e_shstrndx
    // Program header: PT_LOAD of the whole file, read + execute.
    for word in [1, 0, BASE, BASE, total, total, 5, 0x1000] {
        v.extend_from_slice(&u32::to_le_bytes(word));
    }
    v.extend_from_slice(code);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_are_well_formed_elf() {
        let elf = probe_elf("amd64", "386").unwrap();
        assert_eq!(&elf[..4], b"\x7fELF");
        assert_eq!(u16::from_le_bytes([elf[18], elf[19]]), 3);
        assert_eq!(elf.len(), 52 + 32 + 9);
        let arm = probe_elf("arm64", "arm").unwrap();
        assert_eq!(u16::from_le_bytes([arm[18], arm[19]]), 40);
        assert!(probe_elf("amd64", "arm").is_none());
    }

    #[test]
    fn host_platform_is_native() {
        assert!(runs_natively(&Platform::host()));
        assert!(
            !runs_natively(&"linux/s390x".parse().unwrap()) || Platform::host().arch == "s390x"
        );
    }
}
