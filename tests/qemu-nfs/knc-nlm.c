/* knc-nlm: fcntl locks on one file for the NLM check in the guest
 * (nlm-guest.sh), built static into the initramfs by nlm-check.sh.
 *
 *   knc-nlm try FILE    F_SETLK of a whole-file write lock, released at
 *                       once: exit 0 granted, 1 EAGAIN/EACCES, 2 other
 *   knc-nlm test FILE   F_GETLK: prints the conflicting lock; exit 0 if
 *                       there is one, 1 if none
 *   knc-nlm wait FILE   F_SETLKW; prints "granted after N ms"; releases
 *   knc-nlm hold FILE   F_SETLK; prints "held", keeps the lock until a
 *                       line (or EOF) on stdin, releases, prints "released"
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000L + t.tv_nsec / 1000000L;
}

static int setlk(int fd, int cmd, short type) {
    struct flock fl = { .l_type = type, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0 };
    return fcntl(fd, cmd, &fl);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: knc-nlm try|test|wait|hold FILE\n");
        return 2;
    }
    const char *op = argv[1];
    int fd = open(argv[2], O_RDWR);
    if (fd < 0) {
        printf("open: %s\n", strerror(errno));
        return 2;
    }
    setvbuf(stdout, NULL, _IONBF, 0);
    if (strcmp(op, "try") == 0) {
        if (setlk(fd, F_SETLK, F_WRLCK) == 0) {
            printf("granted\n");
            setlk(fd, F_SETLK, F_UNLCK);
            return 0;
        }
        int e = errno;
        printf("%s\n", e == EAGAIN ? "EAGAIN" : e == EACCES ? "EACCES" : strerror(e));
        return (e == EAGAIN || e == EACCES) ? 1 : 2;
    }
    if (strcmp(op, "test") == 0) {
        struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0 };
        if (fcntl(fd, F_GETLK, &fl) != 0) {
            printf("F_GETLK: %s\n", strerror(errno));
            return 2;
        }
        if (fl.l_type == F_UNLCK) {
            printf("no conflicting lock\n");
            return 1;
        }
        printf("conflicting %s lock start %lld len %lld\n", fl.l_type == F_WRLCK ? "write" : "read",
               (long long)fl.l_start, (long long)fl.l_len);
        return 0;
    }
    if (strcmp(op, "wait") == 0) {
        long t0 = now_ms();
        if (setlk(fd, F_SETLKW, F_WRLCK) != 0) {
            printf("F_SETLKW: %s\n", strerror(errno));
            return 2;
        }
        printf("granted after %ld ms\n", now_ms() - t0);
        setlk(fd, F_SETLK, F_UNLCK);
        return 0;
    }
    if (strcmp(op, "hold") == 0) {
        if (setlk(fd, F_SETLK, F_WRLCK) != 0) {
            printf("F_SETLK: %s\n", strerror(errno));
            return 1;
        }
        printf("held\n");
        char line[64];
        if (fgets(line, sizeof line, stdin) == NULL) { /* EOF releases too */ }
        setlk(fd, F_SETLK, F_UNLCK);
        printf("released\n");
        return 0;
    }
    fprintf(stderr, "unknown operation %s\n", op);
    return 2;
}
