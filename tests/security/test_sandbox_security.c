/* test_sandbox_security.c: hostile commands against the sandbox runtime (sbx-init and
 * services/executor/runtime/). Each test asserts the exact failure (errno name printed by
 * sbx_probe inside the sandbox, exit status, or limit counters), then checks that a fresh
 * sandbox still works. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "sandbox_fixture.h"

static void expect_probe(const char *op, const char *arg, const char *want)
{
    TSBX_REQUIRE();
    tsbx t;
    tres r;
    assert_int_equal(tsbx_open(&t, NULL), 0);
    assert_int_equal(tsbx_probe(&t, op, arg, NULL, &r), 0);
    assert_string_equal(r.out, want);
    assert_int_equal(r.st.exit.exit_code, 0);
    tsbx_close(&t);
}

static void sec_host_file_invisible(void **state)
{
    (void)state;
    TSBX_REQUIRE();
    char marker[128], marker2[128], want[320];
    snprintf(marker, sizeof marker, "/var/tmp/sbx-marker-%d", (int)getpid());
    snprintf(marker2, sizeof marker2, "/root/sbx-marker-%d", (int)getpid());
    FILE *f = fopen(marker, "w");
    FILE *f2 = fopen(marker2, "w");
    assert_non_null(f);
    assert_non_null(f2);
    fputs("secret", f);
    fputs("secret", f2);
    fclose(f);
    fclose(f2);
    tsbx t;
    tres r;
    assert_int_equal(tsbx_open(&t, NULL), 0);
    assert_int_equal(tsbx_probe(&t, "read", marker, NULL, &r), 0);
    assert_string_equal(r.out, "ENOENT\n");
    assert_int_equal(tsbx_probe(&t, "read", marker2, NULL, &r), 0);
    assert_string_equal(r.out, "ENOENT\n");
    snprintf(want, sizeof want, "cat %s %s; echo rc=$?", marker, marker2);
    assert_int_equal(tsbx_sh(&t, want, 10000, &r), 0);
    assert_null(strstr(r.out, "secret"));
    assert_non_null(strstr(r.out, "rc=1"));
    tsbx_close(&t);
    unlink(marker);
    unlink(marker2);
    tsbx_assert_fresh_works();
}

static void sec_etc_shadow_eacces(void **state)
{
    (void)state;
    expect_probe("read", "/etc/shadow", "EACCES\n");
}

static void sec_proc1_root_escape_eacces(void **state)
{
    (void)state;
    expect_probe("read", "/proc/1/root/etc/shadow", "EACCES\n");
}

static void sec_write_usr_erofs(void **state)
{
    (void)state;
    expect_probe("write", "/usr/sbx-owned", "EROFS\n");
}

static void sec_write_root_erofs(void **state)
{
    (void)state;
    expect_probe("write", "/sbx-owned", "EROFS\n");
}

static void sec_host_processes_invisible(void **state)
{
    (void)state;
    TSBX_REQUIRE();
    tsbx t;
    tres r;
    assert_int_equal(tsbx_open(&t, NULL), 0);
    assert_int_equal(tsbx_sh(&t, "ps -e -o pid=,comm=", 10000, &r), 0);
    assert_int_equal(r.st.exit.exit_code, 0);
    /* only the init (1), the shell and ps */
    int lines = 0, maxpid = 0;
    for (char *l = r.out; *l;) {
        int pid = (int)strtol(l, NULL, 10);
        if (pid > maxpid)
            maxpid = pid;
        lines++;
        char *nl = strchr(l, '\n');
        if (!nl)
            break;
        l = nl + 1;
    }
    assert_in_range(lines, 2, 3);
    assert_true(maxpid < 50);
    assert_non_null(strstr(r.out, "1 sbx-init"));
    assert_null(strstr(r.out, "kthreadd"));
    tsbx_close(&t);
    tsbx_assert_fresh_works();
}

static void sec_host_loopback_unreachable(void **state)
{
    (void)state;
    TSBX_REQUIRE();
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(s, 8), 0);
    socklen_t sl = sizeof sa;
    getsockname(s, (struct sockaddr *)&sa, &sl);
    char port[16];
    snprintf(port, sizeof port, "%d", ntohs(sa.sin_port));
    tsbx t;
    tres r;
    assert_int_equal(tsbx_open(&t, NULL), 0);
    assert_int_equal(tsbx_probe(&t, "connect", port, NULL, &r), 0);
    assert_string_equal(r.out, "ECONNREFUSED\n");
    tsbx_close(&t);
    close(s);
    tsbx_assert_fresh_works();
}

static void sec_mount_eperm(void **state)
{
    (void)state;
    expect_probe("mount", NULL, "EPERM\n");
}
static void sec_umount_eperm(void **state)
{
    (void)state;
    expect_probe("umount", NULL, "EPERM\n");
}
static void sec_unshare_user_eperm(void **state)
{
    (void)state;
    expect_probe("unshare-user", NULL, "EPERM\n");
}
static void sec_unshare_net_eperm(void **state)
{
    (void)state;
    expect_probe("unshare-net", NULL, "EPERM\n");
}
static void sec_clone_newuser_eperm(void **state)
{
    (void)state;
    expect_probe("clone-newuser", NULL, "EPERM\n");
}
static void sec_clone3_enosys(void **state)
{
    (void)state;
    expect_probe("clone3", NULL, "ENOSYS\n");
}
static void sec_setns_eperm(void **state)
{
    (void)state;
    /* /proc/1/ns/net belongs to the init (uid 0 inside): the open already fails */
    expect_probe("setns", NULL, "EACCES\n");
}
static void sec_ptrace_eperm(void **state)
{
    (void)state;
    expect_probe("ptrace", NULL, "EPERM\n");
}
static void sec_bpf_eperm(void **state)
{
    (void)state;
    expect_probe("bpf", NULL, "EPERM\n");
}
static void sec_keyctl_eperm(void **state)
{
    (void)state;
    expect_probe("keyctl", NULL, "EPERM\n");
}
static void sec_vsock_eperm(void **state)
{
    (void)state;
    expect_probe("vsock", NULL, "EPERM\n");
}
static void sec_chroot_eperm(void **state)
{
    (void)state;
    expect_probe("chroot", NULL, "EPERM\n");
}

static void sec_signal_other_sandbox_esrch(void **state)
{
    (void)state;
    TSBX_REQUIRE();
    tsbx a, b;
    tres r;
    assert_int_equal(tsbx_open(&a, NULL), 0);
    assert_int_equal(tsbx_open(&b, NULL), 0);
    const char *argv[] = {"/bin/sleep", "30", NULL};
    sbx_proc_req req = {.spawn = {.argv = argv, .timeout_ms = 60000}};
    sbx_proc *victim;
    assert_int_equal(sbx_proc_start(a.tab, &req, &victim, NULL), 0);
    sbx_proc_status st;
    sbx_proc_status_get(victim, &st);
    /* the victim's host pid, from the host's view of sandbox a */
    char path[64], buf[64];
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)sbx_sandbox_init_pid(a.sb),
             (int)sbx_sandbox_init_pid(a.sb));
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    assert_non_null(fgets(buf, sizeof buf, f));
    fclose(f);
    int host_pid = (int)strtol(buf, NULL, 10);
    assert_true(host_pid > 1);
    /* from inside b, neither its host pid nor a's inside pid names a's process */
    assert_int_equal(tsbx_probe(&b, "kill", buf, NULL, &r), 0);
    assert_string_equal(r.out, "ESRCH\n");
    /* through the API: pid st.pid does not exist in b (b runs nothing but its init) */
    assert_int_equal(sbx_sandbox_signal(b.sb, st.pid + 100, SIGKILL), -ESRCH);
    assert_true(st.running);
    sbx_proc_status_get(victim, &st);
    assert_true(st.running);
    sbx_proc_unref(victim);
    tsbx_close(&b);
    tsbx_close(&a);
    tsbx_assert_fresh_works();
}

static void sec_fork_bomb(void **state)
{
    (void)state;
    TSBX_REQUIRE();
    sbx_sandbox_limits lim = {.pids = 64};
    tsbx t;
    tres r;
    assert_int_equal(tsbx_open(&t, &lim), 0);
    assert_int_equal(tsbx_probe(&t, "forkbomb", NULL, NULL, &r), 0);
    /* pids.max = 64 counts the init and the probe: at most 62 children */
    int forked = -1;
    assert_int_equal(sscanf(r.out, "forked=%d", &forked), 1);
    assert_in_range(forked, 1, 62);
    assert_non_null(strstr(r.out, "EAGAIN"));
    /* the probe's children outlive it (they sleep): free the pids */
    assert_int_equal(sbx_sandbox_kill_all(t.sb), 0);
    /* the classic shell bomb, cut by the wall-clock timeout (kills the whole tree) */
    assert_int_equal(tsbx_sh(&t, "b() { b | b & }; b; exec sleep 5", 2000, &r), 0);
    assert_true(r.st.exit.timed_out);
    sbx_sandbox_stats st;
    sbx_sandbox_read_stats(t.sb, &st);
    assert_true(st.pids_current <= 64);
    assert_int_equal(sbx_sandbox_kill_all(t.sb), 0);
    assert_int_equal(sbx_sandbox_ping(t.sb), 0);
    assert_int_equal(tsbx_sh(&t, "echo still", 10000, &r), 0);
    assert_string_equal(r.out, "still\n");
    tsbx_close(&t);
    tsbx_assert_fresh_works();
}

static void sec_alloc_30g_oom(void **state)
{
    (void)state;
    TSBX_REQUIRE();
    sbx_sandbox_limits lim = {.memory_bytes = 256ull << 20};
    tsbx t;
    tres r;
    assert_int_equal(tsbx_open(&t, &lim), 0);
    assert_int_equal(tsbx_probe(&t, "alloc", "30", NULL, &r), 0);
    if (r.st.exit.signal == 0) { /* refused by the allocator instead of killed */
        assert_string_equal(r.out, "ENOMEM\n");
    } else {
        assert_int_equal(r.st.exit.signal, SIGKILL);
        sbx_sandbox_stats st;
        sbx_sandbox_read_stats(t.sb, &st);
        assert_true(st.oom_kills >= 1);
        assert_true(st.memory_peak <= (256ull << 20) + (1u << 20));
    }
    assert_int_equal(sbx_sandbox_ping(t.sb), 0);
    tsbx_close(&t);
    tsbx_assert_fresh_works();
}

static long maxrss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static void sec_stdout_500mb_capped(void **state)
{
    (void)state;
    TSBX_REQUIRE();
    tsbx t;
    tres r;
    assert_int_equal(tsbx_open(&t, NULL), 0);
    long before = maxrss_kb();
    const char *argv[] = {"/bin/sh", "-c", "head -c 500000000 /dev/zero; echo done >&2", NULL};
    assert_int_equal(tsbx_runv(&t, argv, 120000, 1 << 20, &r), 0);
    assert_int_equal(r.st.exit.exit_code, 0);
    assert_true(r.st.output_truncated);
    assert_int_equal(r.st.out_end + r.st.err_end, 1 << 20);
    assert_true(r.st.dropped_bytes >= 500000000ull - (1 << 20));
    /* the executor read it all but held at most the ring */
    assert_true(maxrss_kb() - before < 64 * 1024);
    tsbx_close(&t);
    tsbx_assert_fresh_works();
}

static void sec_file_size_limit_efbig(void **state)
{
    (void)state;
    TSBX_REQUIRE();
    sbx_sandbox_limits lim = {.file_bytes = 8ull << 20};
    tsbx t;
    tres r;
    assert_int_equal(tsbx_open(&t, &lim), 0);
    assert_int_equal(tsbx_probe(&t, "fill", "/home/user/big", NULL, &r), 0);
    assert_string_equal(r.out, "bytes=8388608 EFBIG\n");
    tsbx_close(&t);
    tsbx_assert_fresh_works();
}

static void sec_tmp_full_enospc(void **state)
{
    (void)state;
    TSBX_REQUIRE();
    sbx_sandbox_limits lim = {.tmp_bytes = 16ull << 20};
    tsbx t;
    tres r;
    assert_int_equal(tsbx_open(&t, &lim), 0);
    assert_int_equal(tsbx_probe(&t, "fill", "/tmp/big", NULL, &r), 0);
    assert_string_equal(r.out, "bytes=16777216 ENOSPC\n");
    assert_int_equal(tsbx_probe(&t, "fill", "/dev/shm/big", NULL, &r), 0);
    assert_string_equal(r.out, "bytes=16777216 ENOSPC\n");
    tsbx_close(&t);
    tsbx_assert_fresh_works();
}

/* A million files takes minutes on this VM's disk; CI does 20000 (a few seconds). */
static void sec_many_small_files(void **state)
{
    (void)state;
    TSBX_REQUIRE();
    tsbx t;
    tres r;
    assert_int_equal(tsbx_open(&t, NULL), 0);
    assert_int_equal(tsbx_sh(&t, "mkdir /home/user/many", 10000, &r), 0);
    assert_int_equal(tsbx_probe(&t, "files", "/home/user/many", "20000", &r), 0);
    assert_string_equal(r.out, "created=20000 OK\n");
    assert_int_equal(sbx_sandbox_ping(t.sb), 0);
    tsbx_close(&t);
    tsbx_assert_fresh_works();
}

static void sec_timeout_kills_daemons(void **state)
{
    (void)state;
    TSBX_REQUIRE();
    tsbx t;
    tres r;
    assert_int_equal(tsbx_open(&t, NULL), 0);
    /* a daemonised grandchild in its own session escapes the process group, not the cgroup */
    assert_int_equal(tsbx_sh(&t, "setsid sleep 1000 & sleep 1000", 300, &r), 0);
    assert_true(r.st.exit.timed_out);
    assert_int_equal(r.st.exit.signal, SIGKILL);
    usleep(100 * 1000);
    assert_int_equal(tsbx_sh(&t, "ps -e -o comm= | grep -c sleep", 10000, &r), 0);
    assert_string_equal(r.out, "0\n");
    tsbx_close(&t);
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    tsbx_probe_path = SBX_PROBE_PATH; /* every sandbox gets /home/user/sbx_probe */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sec_host_file_invisible),
        cmocka_unit_test(sec_etc_shadow_eacces),
        cmocka_unit_test(sec_proc1_root_escape_eacces),
        cmocka_unit_test(sec_write_usr_erofs),
        cmocka_unit_test(sec_write_root_erofs),
        cmocka_unit_test(sec_host_processes_invisible),
        cmocka_unit_test(sec_host_loopback_unreachable),
        cmocka_unit_test(sec_mount_eperm),
        cmocka_unit_test(sec_umount_eperm),
        cmocka_unit_test(sec_unshare_user_eperm),
        cmocka_unit_test(sec_unshare_net_eperm),
        cmocka_unit_test(sec_clone_newuser_eperm),
        cmocka_unit_test(sec_clone3_enosys),
        cmocka_unit_test(sec_setns_eperm),
        cmocka_unit_test(sec_ptrace_eperm),
        cmocka_unit_test(sec_bpf_eperm),
        cmocka_unit_test(sec_keyctl_eperm),
        cmocka_unit_test(sec_vsock_eperm),
        cmocka_unit_test(sec_chroot_eperm),
        cmocka_unit_test(sec_signal_other_sandbox_esrch),
        cmocka_unit_test(sec_fork_bomb),
        cmocka_unit_test(sec_alloc_30g_oom),
        cmocka_unit_test(sec_stdout_500mb_capped),
        cmocka_unit_test(sec_file_size_limit_efbig),
        cmocka_unit_test(sec_tmp_full_enospc),
        cmocka_unit_test(sec_many_small_files),
        cmocka_unit_test(sec_timeout_kills_daemons),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
