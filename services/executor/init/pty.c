/* pty.c: a command's terminal. A Spawn with a terminal size gets a new pseudo-terminal from the
 * sandbox's own devpts instance (mounts.c: newinstance, its ptys owned by the sandbox user, at
 * most SBX_PTY_MAX of them): the master side goes back to the executor, the slave side becomes
 * the command's stdin, stdout, stderr and controlling terminal (spawn.c: setsid, TIOCSCTTY).
 *
 * The slave is opened from the master with TIOCGPTPEER, never by its /dev/pts/N name, so no
 * path lookup happens between allocating the pair and handing it out. The line discipline
 * starts in the kernel's defaults (canonical, echo, signals, CR to NL) plus IUTF8, so erasing a
 * multi-byte character removes all of its bytes.
 *
 * Threads: the init's one thread. */
#include "init_parts.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

int sbx_pty_open(uint32_t cols, uint32_t rows, int *master, int *slave)
{
    *master = *slave = -1;
    int m = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (m < 0)
        return -errno;
    int unlock = 0;
    struct winsize ws = {.ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols};
    struct termios t;
    int rc = 0;
    if (ioctl(m, TIOCSPTLCK, &unlock) < 0 || ioctl(m, TIOCSWINSZ, &ws) < 0)
        rc = -errno;
    if (rc == 0 && tcgetattr(m, &t) == 0) {
        t.c_iflag |= IUTF8;
        tcsetattr(m, TCSANOW, &t); /* without it: still a terminal, bytes erased one by one */
    }
    int s = rc == 0 ? ioctl(m, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC) : -1;
    if (rc == 0 && s < 0)
        rc = -errno;
    if (rc < 0) {
        close(m);
        return rc;
    }
    *master = m;
    *slave = s;
    return 0;
}
