//! Base images with layers a user namespace cannot reproduce as they are: the build scans
//! them before it uses them and names what it drops on the `FROM` line.

#[path = "sandbox_support/mod.rs"]
mod sandbox_support;

use rbuild_e2e::require;
use rbuild_e2e::user::current_uid;
use sandbox_support::{Sandboxed, Tar, show};
use serde_json::Value;

#[test]
fn selinux_labels_in_a_base_layer_are_named_on_the_from_line() {
    let s = require!(Sandboxed::new());
    s.add_image(
        "labelled",
        &[Tar::default()
            .pax(&[(
                "SCHILY.xattr.security.selinux",
                b"system_u:object_r:etc_t:s0\0",
            )])
            .file("etc/labelled", b"labelled\n", 0o644)
            .finish()],
    );
    let ctx = s.dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "# a base with SELinux labels\nFROM base\nRUN cat /etc/labelled > /copy\n",
    )
    .unwrap();
    if current_uid() == 0 {
        std::os::unix::fs::chown(&ctx, Some(s.env.user.uid), Some(s.env.user.gid)).unwrap();
        std::os::unix::fs::chown(
            ctx.join("Dockerfile"),
            Some(s.env.user.uid),
            Some(s.env.user.gid),
        )
        .unwrap();
    }
    let out = s
        .env
        .rbuild()
        .current_dir(s.dir.path())
        .arg("build")
        .arg("--cache-dir")
        .arg(&s.cache)
        .args(["--progress", "json", "--build-context"])
        .arg(format!("base=oci-layout://{}:labelled", s.layout.display()))
        .arg(&ctx)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let diags: Vec<Value> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["type"] == "diagnostic")
        .collect();
    let selinux: Vec<&Value> = diags
        .iter()
        .filter(|d| d["id"] == "xattr-security-selinux-in-layer")
        .collect();
    assert_eq!(
        selinux.len(),
        1,
        "one diagnostic, not one per step: {diags:?}"
    );
    assert_eq!(selinux[0]["severity"], "warning");
    assert_eq!(selinux[0]["line"], 2, "on the FROM line: {}", selinux[0]);
    assert!(
        selinux[0]["message"]
            .as_str()
            .unwrap()
            .contains("etc/labelled"),
        "{}",
        selinux[0]
    );
}
