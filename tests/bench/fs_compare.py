#!/usr/bin/env python3
"""fs_compare.py WORKLOAD ROOT_A ROOT_B -> markdown: how two unpacked root file systems
differ in paths, types, modes, owners and contents (times are not compared).

ROOT_A is rbuild's image, ROOT_B Buildah's (both `umoci unpack`ed as root, so owners are
the images' own). The empty `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf` stubs
Buildah leaves in RUN layers are reported separately: rbuild must not have them.
"""
import hashlib
import os
import stat
import sys

STUBS = {"etc/hosts", "etc/hostname", "etc/resolv.conf"}


def scan(root):
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            kind = stat.S_IFMT(st.st_mode)
            extra = ""
            if stat.S_ISLNK(st.st_mode):
                extra = os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                h = hashlib.sha256()
                with open(p, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
                extra = h.hexdigest()[:16] + f" ({st.st_size} B)"
            out[rel] = (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, extra)
    return out


def show(v):
    kind, mode, uid, gid, extra = v
    k = {stat.S_IFDIR: "dir", stat.S_IFREG: "file", stat.S_IFLNK: "link"}.get(kind, oct(kind))
    return f"{k} {mode:o} {uid}:{gid} {extra}"


def main(wl, a, b):
    ra, rb = scan(a), scan(b)
    stubs_b = sorted(p for p in STUBS if p in rb and p not in ra)
    stubs_a = sorted(p for p in STUBS if p in ra and p not in rb)
    only_a = sorted(p for p in ra if p not in rb)
    only_b = sorted(p for p in rb if p not in ra and p not in STUBS)
    differ = sorted(p for p in ra if p in rb and ra[p] != rb[p])
    content_only = [p for p in differ if ra[p][:4] == rb[p][:4]]
    meta = [p for p in differ if ra[p][:4] != rb[p][:4]]
    print(f"\n#### {wl}: {len(ra)} paths (rbuild), {len(rb)} (Buildah)\n")
    print(f"- identical (path, type, mode, owner, content): {len(ra) - len(only_a) - len(differ)}")
    print(f"- Buildah's RUN stubs rbuild does not leave: {', '.join('/' + p for p in stubs_b) or 'none'}"
          + (f"; rbuild has stubs Buildah lacks: {stubs_a}" if stubs_a else ""))
    print(f"- only in rbuild's: {len(only_a)}; only in Buildah's: {len(only_b)}")
    print(f"- same metadata, other content (build-time output such as dates, logs): {len(content_only)}")
    print(f"- other type, mode or owner: {len(meta)}")
    for title, paths, lim in [("only in rbuild's", only_a, 15), ("only in Buildah's", only_b, 15),
                              ("other content", content_only, 15), ("other metadata", meta, 30)]:
        if not paths:
            continue
        print(f"\n  {title}:")
        for p in paths[:lim]:
            va = show(ra[p]) if p in ra else "-"
            vb = show(rb[p]) if p in rb else "-"
            print(f"  - `/{p}`: rbuild `{va}`, Buildah `{vb}`")
        if len(paths) > lim:
            print(f"  - ... and {len(paths) - lim} more")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
