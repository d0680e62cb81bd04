#!/usr/bin/env python3
"""Build the shim test's OCI images without a registry or any tool beyond Python.

    shim-test-image.py OUT.tar NAME rootfs ENTRY [MODULE...]   a regular image: one tar layer
                                                               holding the modules at /
                                                               (MODULE may be NAME=HOSTFILE)
    shim-test-image.py [--diff-id] OUT.tar NAME wasm MODULE    a WASM OCI image: the module as a
                                                               layer of type application/wasm
    shim-test-image.py --module MODULE OUT.wasm                 just write one test module

MODULE is one of the test modules below, written out as WebAssembly binary (a tiny encoder: the
test needs no wat2wasm). The tarball is an OCI image layout (oci-layout, index.json, blobs/)
that `ctr image import` takes.
"""
import hashlib
import io
import json
import struct
import sys
import tarfile


def uleb(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def sleb(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if (n == 0 and not b & 0x40) or (n == -1 and b & 0x40):
            out.append(b)
            return bytes(out)
        out.append(b | 0x80)


def vec(items):
    return uleb(len(items)) + b"".join(items)


def name(s):
    return uleb(len(s)) + s.encode()


def section(sid, payload):
    return bytes([sid]) + uleb(len(payload)) + payload


I32 = 0x7F


def functype(params, results):
    return b"\x60" + vec([bytes([p]) for p in params]) + vec([bytes([r]) for r in results])


def i32const(n):
    return b"\x41" + sleb(n)


def call(i):
    return b"\x10" + uleb(i)


DROP = b"\x1a"
END = b"\x0b"


def module(imports, body, data=(), memory=True):
    """A WASI command: `imports` as (name, functype) from wasi_snapshot_preview1, one `_start`
    whose code is `body`, one memory page exported as `memory`, `data` as (offset, bytes)."""
    types = [ft for _, ft in imports] + [functype([], [])]
    out = b"\0asm\x01\0\0\0"
    out += section(1, vec(types))
    if imports:
        out += section(2, vec([name("wasi_snapshot_preview1") + name(n) + b"\x00" + uleb(i) for i, (n, _) in enumerate(imports)]))
    out += section(3, vec([uleb(len(imports))]))
    if memory:
        out += section(5, vec([b"\x00\x01"]))
    exports = [name("_start") + b"\x00" + uleb(len(imports))]
    if memory:
        exports.append(name("memory") + b"\x02\x00")
    out += section(7, vec(exports))
    code = vec([]) + body + END
    out += section(10, vec([uleb(len(code)) + code]))
    if data:
        out += section(11, vec([b"\x00" + i32const(off) + END + vec([bytes([b]) for b in blob]) for off, blob in data]))
    return out


FD_WRITE = ("fd_write", functype([I32] * 4, [I32]))
PROC_EXIT = ("proc_exit", functype([I32], []))
ARGS_SIZES = ("args_sizes_get", functype([I32] * 2, [I32]))
ARGS_GET = ("args_get", functype([I32] * 2, [I32]))
ENV_SIZES = ("environ_sizes_get", functype([I32] * 2, [I32]))
ENV_GET = ("environ_get", functype([I32] * 2, [I32]))


def write_stdout(fd_write, buf, length_code):
    """iovec at 16 = (buf, length) and fd_write(1, 16, 1, 24)."""
    return (i32const(16) + i32const(buf) + b"\x36\x02\x00" + i32const(20) + length_code + b"\x36\x02\x00"
            + i32const(1) + i32const(16) + i32const(1) + i32const(24) + call(fd_write) + DROP)


def hello():
    msg = b"hello from wasce\n"
    body = i32const(1) + i32const(0) + i32const(1) + i32const(20) + call(0) + DROP
    return module([FD_WRITE], body, data=[(0, struct.pack("<II", 32, len(msg))), (32, msg)])


def exit7():
    return module([PROC_EXIT], i32const(7) + call(0))


def trap():
    return module([], b"\x00")  # unreachable


def spin():
    return module([], b"\x03\x40\x0c\x00\x0b")  # loop br 0 end


def args_env():
    """Writes its argv buffer, then its environ buffer (NUL-separated strings) to stdout."""
    load4 = i32const(4) + b"\x28\x02\x00"
    body = (i32const(0) + i32const(4) + call(0) + DROP + i32const(100) + i32const(1000) + call(1) + DROP
            + write_stdout(4, 1000, load4)
            + i32const(0) + i32const(4) + call(2) + DROP + i32const(100) + i32const(8000) + call(3) + DROP
            + write_stdout(4, 8000, load4))
    return module([ARGS_SIZES, ARGS_GET, ENV_SIZES, ENV_GET, FD_WRITE], body)


def grow():
    """memory.grow by 2000 pages (125 MiB): exits 3 if that fails, else 0."""
    body = i32const(3) + i32const(0) + i32const(2000) + b"\x40\x00" + i32const(-1) + b"\x46" + b"\x1b" + call(0)
    return module([PROC_EXIT], body)


def artifact():
    """Not WebAssembly: bytes that start like a wasce AOT artifact (.cwasm), which the shim must
    refuse to load from an image (only artifacts it sealed itself are code)."""
    return b"WASCE\0AOT" + bytes(200)


MODULES = {"artifact": artifact, "hello": hello, "exit7": exit7, "trap": trap, "spin": spin, "args_env": args_env, "grow": grow}


def blob(blobs, data, media_type):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def tar_bytes(files, mode=0o755):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for path, data in files:
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mode = mode
            info.mtime = 0
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def image(out, ref, kind, rest):
    blobs = {}
    if kind == "rootfs":
        entry, mods = rest[0], rest[1:]
        # NAME=HOSTFILE puts a host file at /NAME (the runc baseline's static busybox).
        files = [(m.split("=", 1)[0], open(m.split("=", 1)[1], "rb").read()) if "=" in m else (f"{m}.wasm", MODULES[m]()) for m in mods]
        entry = entry if "/" in entry else f"/{entry}.wasm"
        layer_data = tar_bytes(files)
        layer = blob(blobs, layer_data, "application/vnd.oci.image.layer.v1.tar")
        config = {"architecture": "amd64", "os": "linux",
                  "config": {"Entrypoint": [entry], "Env": ["PATH=/"], "WorkingDir": "/"},
                  "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]}}
        platform = {"architecture": "amd64", "os": "linux"}
    elif kind == "wasm":
        (mod,) = rest
        layer = blob(blobs, MODULES[mod](), "application/wasm")
        # runwasi's oci-tar-builder lists no diff_ids (the module is no filesystem layer), which
        # containerd before 1.6.25/1.7.7 refuses ("mismatched image rootfs and manifest
        # layers"). For those, `--diff-id` lists the layer's digest as its diff ID; the image is
        # then imported with --no-unpack and an empty snapshot committed under that chain ID
        # stands for its (empty) root filesystem (scripts/shim-test.sh).
        diff_ids = [layer["digest"]] if DIFF_ID else []
        config = {"architecture": "wasm", "os": "wasip1",
                  "config": {"Entrypoint": [f"/{mod}.wasm"]},
                  "rootfs": {"type": "layers", "diff_ids": diff_ids}}
        platform = {"architecture": "wasm", "os": "wasip1"}
    else:
        raise SystemExit(f"unknown kind {kind}")
    cfg = blob(blobs, json.dumps(config).encode(), "application/vnd.oci.image.config.v1+json")
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": cfg, "layers": [layer]}
    man = blob(blobs, json.dumps(manifest).encode(), "application/vnd.oci.image.manifest.v1+json")
    man["platform"] = platform
    man["annotations"] = {"io.containerd.image.name": ref, "org.opencontainers.image.ref.name": ref.rsplit(":", 1)[-1]}
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [man]}
    files = [("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode()), ("index.json", json.dumps(index).encode())]
    files += [(f"blobs/sha256/{d.split(':')[1]}", data) for d, data in blobs.items()]
    with open(out, "wb") as f:
        f.write(tar_bytes(files, mode=0o644))


DIFF_ID = False


def main(argv):
    global DIFF_ID
    if argv and argv[0] == "--diff-id":
        DIFF_ID = True
        argv = argv[1:]
    if len(argv) == 3 and argv[0] == "--module":
        with open(argv[2], "wb") as f:
            f.write(MODULES[argv[1]]())
        return
    if len(argv) < 4:
        raise SystemExit(__doc__)
    image(argv[0], argv[1], argv[2], argv[3:])


if __name__ == "__main__":
    main(sys.argv[1:])
