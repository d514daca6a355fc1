#!/usr/bin/env python3
"""The million-file soak's workload (driven by scripts/soak-files.sh).

    soak-files.py fs   DIR              TREE PHASE DIRS PER_DIR SIZE [WORKERS]
    soak-files.py nfs  HOST:PORT/EXPORT TREE PHASE DIRS PER_DIR SIZE [WORKERS]

PHASE is create, list, stat or read; it runs over DIRS directories of
PER_DIR files of SIZE bytes each (`TREE/dNNNNN/fNNN`), split among WORKERS
threads (default 4), and prints one line: "PHASE files SECONDS files/s
errors". `fs` goes through a mounted path (os calls, as any program does);
`nfs` speaks NFSv3 to the gateway itself (MOUNT, then MKDIR, CREATE
GUARDED + WRITE FILE_SYNC, READDIRPLUS, LOOKUP, READ; one TCP connection per
worker, AUTH_UNIX root): a client that needs no kernel support and keeps
no cache of its own, so every call reaches the gateway.

Every file's bytes name the file, and `read` checks them: a soak that only
counted would not notice a wrong answer.
"""

import os
import socket
import struct
import sys
import threading
import time


def body(d, f, size):
    stamp = f"soak d{d:05d} f{f:03d}\n".encode()
    return (stamp * (size // len(stamp) + 1))[:size]


def dir_name(d):
    return f"d{d:05d}"


def file_name(f):
    return f"f{f:03d}"


# ---- through a mounted path ------------------------------------------------


class Fs:
    def __init__(self, root, tree):
        self.root = os.path.join(root, tree)

    def setup(self):
        os.makedirs(self.root, exist_ok=True)

    def create(self, d, per_dir, size):
        path = os.path.join(self.root, dir_name(d))
        os.mkdir(path)
        for f in range(per_dir):
            fd = os.open(os.path.join(path, file_name(f)), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                os.write(fd, body(d, f, size))
            finally:
                os.close(fd)
        return per_dir

    def list(self, d, per_dir, size):
        names = os.listdir(os.path.join(self.root, dir_name(d)))
        if len(names) != per_dir:
            raise RuntimeError(f"{dir_name(d)}: {len(names)} names, not {per_dir}")
        return len(names)

    def stat(self, d, per_dir, size):
        path = os.path.join(self.root, dir_name(d))
        for f in range(per_dir):
            st = os.stat(os.path.join(path, file_name(f)))
            if st.st_size != size:
                raise RuntimeError(f"{dir_name(d)}/{file_name(f)}: size {st.st_size}")
        return per_dir

    def read(self, d, per_dir, size):
        path = os.path.join(self.root, dir_name(d))
        for f in range(per_dir):
            with open(os.path.join(path, file_name(f)), "rb") as fh:
                if fh.read() != body(d, f, size):
                    raise RuntimeError(f"{dir_name(d)}/{file_name(f)}: wrong bytes")
        return per_dir


# ---- NFSv3 over one TCP connection (RFC 1813, RFC 5531) ---------------------

NFS_PROG, NFS_VERS, MOUNT_PROG, MOUNT_VERS = 100003, 3, 100005, 3
GETATTR, LOOKUP, READ, WRITE, CREATE, MKDIR, READDIRPLUS = 1, 3, 6, 7, 8, 9, 17
FATTR_LEN = 84


class Xdr:
    def __init__(self):
        self.parts = []

    def u32(self, v):
        self.parts.append(struct.pack(">I", v))
        return self

    def u64(self, v):
        self.parts.append(struct.pack(">Q", v))
        return self

    def opaque(self, b):
        self.u32(len(b))
        self.parts.append(b + b"\0" * (-len(b) % 4))
        return self

    def bytes(self):
        return b"".join(self.parts)


class Reader:
    def __init__(self, buf):
        self.buf, self.pos = buf, 0

    def u32(self):
        (v,) = struct.unpack_from(">I", self.buf, self.pos)
        self.pos += 4
        return v

    def u64(self):
        (v,) = struct.unpack_from(">Q", self.buf, self.pos)
        self.pos += 8
        return v

    def opaque(self):
        n = self.u32()
        b = self.buf[self.pos:self.pos + n]
        self.pos += n + (-n % 4)
        return b

    def skip(self, n):
        self.pos += n

    def post_op_attr(self):
        """The attributes' size, or None when absent."""
        if not self.u32():
            return None
        (size,) = struct.unpack_from(">Q", self.buf, self.pos + 20)
        self.pos += FATTR_LEN
        return size

    def wcc_data(self):
        if self.u32():
            self.skip(24)
        self.post_op_attr()


class NfsError(Exception):
    pass


class Nfs:
    """One worker's connection."""

    def __init__(self, target, tree):
        self.tree = tree
        hostport, export = target.split("/", 1)
        host, port = hostport.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.xid = int.from_bytes(os.urandom(4), "big")
        cred = Xdr().u32(0).opaque(b"brickfs-soak").u32(0).u32(0).u32(0).bytes()
        self.auth = Xdr().u32(1).opaque(cred).u32(0).opaque(b"").bytes()
        r = self.call(MOUNT_PROG, MOUNT_VERS, 1, Xdr().opaque(("/" + export).encode()).bytes())
        status = r.u32()
        if status != 0:
            raise NfsError(f"MOUNT /{export}: status {status}")
        self.export_root = r.opaque()
        self.root = None

    def call(self, prog, vers, proc, args):
        self.xid = (self.xid + 1) & 0xFFFFFFFF
        msg = struct.pack(">IIIIII", self.xid, 0, 2, prog, vers, proc) + self.auth + args
        self.sock.sendall(struct.pack(">I", 0x80000000 | len(msg)) + msg)
        reply = b""
        while True:
            (mark,) = struct.unpack(">I", self.recv(4))
            reply += self.recv(mark & 0x7FFFFFFF)
            if mark & 0x80000000:
                break
        r = Reader(reply)
        xid, mtype, stat = r.u32(), r.u32(), r.u32()
        if xid != self.xid or mtype != 1 or stat != 0:
            raise NfsError(f"reply xid {xid} type {mtype} stat {stat}")
        r.u32()
        r.opaque()
        accept = r.u32()
        if accept != 0:
            raise NfsError(f"call {prog}/{proc} not accepted: {accept}")
        return r

    def recv(self, n):
        out = bytearray()
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise NfsError("the gateway closed the connection")
            out += chunk
        return bytes(out)

    def nfs(self, proc, args, what):
        r = self.call(NFS_PROG, NFS_VERS, proc, args)
        status = r.u32()
        if status != 0:
            raise NfsError(f"{what}: nfsstat3 {status}")
        return r

    def lookup(self, dirfh, name):
        r = self.nfs(LOOKUP, Xdr().opaque(dirfh).opaque(name.encode()).bytes(), f"LOOKUP {name}")
        fh = r.opaque()
        return fh, r.post_op_attr()

    def make(self, proc, dirfh, name, mode):
        args = Xdr().opaque(dirfh).opaque(name.encode())
        if proc == CREATE:
            args.u32(1)  # GUARDED
        # sattr3: mode set, uid/gid/size unset, times don't change.
        args.u32(1).u32(mode).u32(0).u32(0).u32(0).u32(0).u32(0)
        r = self.nfs(proc, args.bytes(), f"create {name}")
        if not r.u32():
            return self.lookup(dirfh, name)[0]
        return r.opaque()

    def soak_root(self):
        if self.root is None:
            try:
                self.root = self.lookup(self.export_root, self.tree)[0]
            except NfsError:
                self.root = self.make(MKDIR, self.export_root, self.tree, 0o755)
        return self.root

    def dir_fh(self, d):
        return self.lookup(self.soak_root(), dir_name(d))[0]


class NfsWorkload:
    def __init__(self, target, tree):
        self.target, self.tree = target, tree
        self.local = threading.local()

    def conn(self):
        if not hasattr(self.local, "nfs"):
            self.local.nfs = Nfs(self.target, self.tree)
        return self.local.nfs

    def setup(self):
        self.conn().soak_root()

    def create(self, d, per_dir, size):
        n = self.conn()
        dirfh = n.make(MKDIR, n.soak_root(), dir_name(d), 0o755)
        for f in range(per_dir):
            fh = n.make(CREATE, dirfh, file_name(f), 0o644)
            data = body(d, f, size)
            r = n.nfs(WRITE, Xdr().opaque(fh).u64(0).u32(len(data)).u32(2).opaque(data).bytes(), "WRITE")
            r.wcc_data()
            if r.u32() != len(data):
                raise NfsError(f"short WRITE to {dir_name(d)}/{file_name(f)}")
        return per_dir

    def list(self, d, per_dir, size):
        n = self.conn()
        dirfh = n.dir_fh(d)
        names, cookie, verf = 0, 0, b"\0" * 8
        while True:
            args = Xdr().opaque(dirfh).u64(cookie).bytes() + verf + Xdr().u32(8192).u32(65536).bytes()
            r = n.nfs(READDIRPLUS, args, "READDIRPLUS")
            r.post_op_attr()
            verf = r.buf[r.pos:r.pos + 8]
            r.skip(8)
            while r.u32():
                r.u64()
                name = r.opaque()
                cookie = r.u64()
                r.post_op_attr()
                if r.u32():
                    r.opaque()
                if name not in (b".", b".."):
                    names += 1
            if r.u32():
                break
        if names != per_dir:
            raise NfsError(f"{dir_name(d)}: {names} names, not {per_dir}")
        return names

    def looked_up(self, d, per_dir):
        """(connection, file number, handle, size) of each file of dNNNNN."""
        n = self.conn()
        dirfh = n.dir_fh(d)
        for f in range(per_dir):
            fh, got = n.lookup(dirfh, file_name(f))
            yield n, f, fh, got

    def stat(self, d, per_dir, size):
        for _, f, _, got in self.looked_up(d, per_dir):
            if got != size:
                raise NfsError(f"{dir_name(d)}/{file_name(f)}: size {got}")
        return per_dir

    def read(self, d, per_dir, size):
        for n, f, fh, _ in self.looked_up(d, per_dir):
            r = n.nfs(READ, Xdr().opaque(fh).u64(0).u32(size).bytes(), "READ")
            r.post_op_attr()
            r.u32()
            r.u32()
            if r.opaque() != body(d, f, size):
                raise NfsError(f"{dir_name(d)}/{file_name(f)}: wrong bytes")
        return per_dir


def main():
    if len(sys.argv) < 8 or sys.argv[1] not in ("fs", "nfs"):
        sys.exit(__doc__)
    kind, target, tree, phase = sys.argv[1:5]
    dirs, per_dir, size = int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
    workers = int(sys.argv[8]) if len(sys.argv) > 8 else 4
    load = (Fs if kind == "fs" else NfsWorkload)(target, tree)
    if phase == "create":
        load.setup()
    op = getattr(load, phase)
    done, errors, lock = [0], [], threading.Lock()

    def work(first):
        try:
            for d in range(first, dirs, workers):
                n = op(d, per_dir, size)
                with lock:
                    done[0] += n
        except Exception as e:  # reported, and the soak fails
            with lock:
                errors.append(f"{phase} d{d:05d}: {e}")

    t0 = time.monotonic()
    threads = [threading.Thread(target=work, args=(w,)) for w in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    secs = time.monotonic() - t0
    print(f"{phase} {done[0]} {secs:.1f} {done[0] / secs:.0f} {len(errors)}", flush=True)
    for e in errors[:10]:
        print(f"# error: {e}", file=sys.stderr)
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
