/* Copied unchanged from the shared qemu-nfs kit (../shared/qemu-nfs next to
 * the repository). */
/* Tiny static helper baked into the guest initramfs: tries a POSIX (fcntl)
 * write lock and a BSD flock on FILE and reports what the kernel said.
 * Exit 0 if both succeeded, 1 otherwise. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: knc-lock FILE\n"); return 2; }
    int fd = open(argv[1], O_RDWR);
    if (fd < 0) { printf("open: %s\n", strerror(errno)); return 1; }
    struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0 };
    int bad = 0;
    if (fcntl(fd, F_SETLK, &fl) == 0) printf("fcntl-lock ok; ");
    else { printf("fcntl-lock: %s; ", strerror(errno)); bad = 1; }
    fl.l_type = F_UNLCK; fcntl(fd, F_SETLK, &fl);
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) printf("flock ok\n");
    else { printf("flock: %s\n", strerror(errno)); bad = 1; }
    return bad;
}
